"""TTT-Linear: the inner loop is gradient descent on the reconstruction loss (checked with autograd), the dual
form equals the primal mini-batch TTT, mini-batch semantics, the cache's token count, the output gate, float work
(the contract every architecture keeps: test_architectures_contract.py)."""

import pytest
import torch
import torch.nn.functional as F

from models.arch.operators import Operators
from models.arch.spiking_config import SpikingConfig
from models.arch.ttt import TTTCache, TTTConfig, TTTForCausalLM, TTTLinear, TTTState
from models.spiking import OpCounter
from tests import tiny_models
from tests.tiny_models import randomize_inner_model

TINY = tiny_models.TINY["ttt"]


def tiny(mode: str = "ann", seed: int = 0, **config) -> TTTForCausalLM:
    return tiny_models.tiny_model("ttt", mode, seed, **config)


def layer(mini_batch_size: int = 4, seed: int = 0) -> TTTLinear:
    torch.manual_seed(seed)
    ttt = TTTLinear(TTTConfig(**{**TINY, "mini_batch_size": mini_batch_size}), Operators(SpikingConfig())).double()
    randomize_inner_model(ttt, seed)
    return ttt


def inner_loss(ttt: TTTLinear, W, b, xk, xv):
    """Per head: 1/2 || LN(x_k W + b) + x_k - x_v ||^2, written independently of the module (F.layer_norm)."""
    Z = xk @ W + b[:, None]
    ln = F.layer_norm(Z, Z.shape[-1:], eps=1e-6) * ttt.ttt_norm_weight[:, None] + ttt.ttt_norm_bias[:, None]
    return 0.5 * (ln + xk - xv).pow(2).sum(-1)  # (H, tokens)


def test_one_mini_batch_update_is_a_gradient_step():
    ttt = layer(mini_batch_size=4)
    x = torch.randn(1, 4, 32, dtype=torch.float64)
    count = torch.zeros(1, dtype=torch.int64)
    with torch.no_grad():
        _, after = ttt(x, torch.ones(1, 4, dtype=torch.bool), ttt.initial_state(1), count)
        _, xk, xv, eta = ttt.views(x, torch.arange(4)[None])
    W, b = ttt.W1.detach().clone().requires_grad_(), ttt.b1.detach().clone().requires_grad_()
    loss = (eta[0] * inner_loss(ttt, W, b, xk[0], xv[0])).sum()  # sum_j eta_j l(W; x_j), eta per head and token
    grad_W, grad_b = torch.autograd.grad(loss, (W, b))
    step = (ttt.token_idx[-1] + ttt.learnable_token_idx[-1]).clamp(min=0).item()  # the mini-batch average 1/b (+ learned offset)
    assert torch.allclose(after.W[0], ttt.W1 - step * grad_W, atol=1e-12)
    assert torch.allclose(after.b[0], ttt.b1 - step * grad_b, atol=1e-12)
    assert not torch.allclose(after.W[0], ttt.W1)
    assert after.grad_W.abs().max() == 0  # a completed mini-batch leaves no partial gradient


def primal_reference(ttt: TTTLinear, xq, xk, xv, eta, mask, state: TTTState, count):
    """Mini-batch TTT token by token in the primal form, gradients by autograd (one row at a time).

    Every token's gradient is taken at W_0, the W of its mini-batch's start; the output of the
    i-th token of a mini-batch uses W_i = W_0 - s_i * (sum of the eta-weighted gradients so far).
    """
    B, H, L, d = xq.shape
    size = ttt.mini_batch_size
    scale = (ttt.token_idx + ttt.learnable_token_idx).clamp(min=0)
    outputs = torch.zeros_like(xq)
    finals = []
    for r in range(B):
        W, b, gW, gb, i = state.W[r], state.b[r], state.grad_W[r].clone(), state.grad_b[r].clone(), int(count[r])
        for t in range(int(mask[r].sum())):
            W0, b0 = W.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
            loss = (eta[r, :, t] * inner_loss(ttt, W0, b0, xk[r, :, t : t + 1], xv[r, :, t : t + 1])[:, 0]).sum()
            dW, db = torch.autograd.grad(loss, (W0, b0))
            gW, gb, i = gW + dW, gb + db, i + 1
            W_t, b_t = W - scale[i - 1] * gW, b - scale[i - 1] * gb
            z = xq[r, :, t : t + 1] @ W_t + b_t[:, None]
            outputs[r, :, t] = (F.layer_norm(z, (d,), eps=1e-6) * ttt.ttt_norm_weight[:, None] + ttt.ttt_norm_bias[:, None] + xq[r, :, t : t + 1])[:, 0]
            if i == size:  # the mini-batch is complete: the next one starts from W_b
                W, b, gW, gb, i = W_t, b_t, torch.zeros_like(gW), torch.zeros_like(gb), 0
        finals.append((W, b, gW, gb, i))
    return outputs, finals


@pytest.mark.parametrize("mini_batch_size", [1, 3, 4])
def test_dual_form_equals_primal_mini_batch_ttt(mini_batch_size):
    """Rows start at different points of a mini-batch (a cache) and end at different lengths (padding)."""
    ttt = layer(mini_batch_size)
    g = torch.Generator().manual_seed(mini_batch_size)
    B, H, L, d = 3, 2, 9, 16
    xq, xk, xv = (torch.randn(B, H, L, d, generator=g, dtype=torch.float64) for _ in range(3))
    eta = torch.rand(B, H, L, generator=g, dtype=torch.float64) * 0.5
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 8 + [0]], dtype=torch.bool)
    count = torch.tensor([0, 2, 1]) % mini_batch_size
    state = ttt.initial_state(B)
    carried = (count > 0).view(B, 1, 1)  # random partial gradients where a mini-batch is already open
    state = TTTState(
        state.W + 0.1 * torch.randn(B, H, d, d, generator=g, dtype=torch.float64),
        state.b,
        torch.where(carried[..., None], torch.randn(B, H, d, d, generator=g, dtype=torch.float64), 0),
        torch.where(carried, torch.randn(B, H, d, generator=g, dtype=torch.float64), 0),
    )
    with torch.no_grad():
        z, new = ttt.inner_loop(xq, xk, xv, eta, mask, state, count)
    expected, finals = primal_reference(ttt, xq, xk, xv, eta, mask, state, count)
    for r, (W, b, gW, gb, i) in enumerate(finals):
        n = int(mask[r].sum())
        assert torch.allclose(z[r, :, :n], expected[r, :, :n], atol=1e-10)
        for mine, ref in zip((new.W[r], new.b[r], new.grad_W[r], new.grad_b[r]), (W, b, gW, gb)):
            assert torch.allclose(mine, ref, atol=1e-10)
        assert (int(count[r]) + n) % mini_batch_size == i


def test_tokens_of_a_mini_batch_share_its_starting_w():
    """With b = 4, token 2's output does not depend on whether W moved after token 1 (it did not)."""
    ttt = layer(mini_batch_size=4)
    g = torch.Generator().manual_seed(0)
    xq, xk, xv = (torch.randn(1, 2, 4, 16, generator=g, dtype=torch.float64) for _ in range(3))
    eta = torch.full((1, 2, 4), 0.3, dtype=torch.float64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        z, _ = ttt.inner_loop(xq, xk, xv, eta, mask, ttt.initial_state(1), torch.zeros(1, dtype=torch.int64))
        online = layer(mini_batch_size=1)  # same weights (same seed); b = 1 is plain online gradient descent
        z1, _ = online.inner_loop(xq, xk, xv, eta, mask, online.initial_state(1), torch.zeros(1, dtype=torch.int64))
    assert torch.allclose(z[..., 0, :], z1[..., 0, :])  # the first token sees the same W_1 either way
    assert not torch.allclose(z[..., 1:, :], z1[..., 1:, :])  # later tokens: gradients at W_0 versus at W_{t-1}


def test_the_cache_counts_the_tokens_of_the_open_mini_batch():
    """Calls start and end inside mini-batches; padded tokens are not counted (test_architectures_contract.py checks the rest)."""
    model = tiny()
    ids = torch.randint(0, 97, (2, 14))
    with torch.no_grad():
        cache = None
        for a, b in [(0, 3), (3, 4), (4, 9), (9, 10), (10, 11), (11, 14)]:
            _, cache = model(ids[:, a:b], cache=cache, use_cache=True)
        assert isinstance(cache, TTTCache) and cache.count.tolist() == [14 % 4] * 2
        for mask in ([[1] * 6 + [0] * 3, [1] * 9], [[0] * 3 + [1] * 6, [1] * 9]):
            _, cache = model(torch.randint(1, 97, (2, 9)), torch.tensor(mask), use_cache=True)
            assert cache.count.tolist() == [6 % 4, 9 % 4]


def test_qat_mode_trains_the_output_gate():
    model = tiny("qat", use_gate=True).train()
    ids = torch.randint(0, 97, (2, 9))
    logits, _ = model(ids, torch.tensor([[0, 0] + [1] * 7, [1] * 9]))
    ttt = model.model.layers[0].seq_modeling_block
    assert type(ttt.q_proj).__name__ == "QSynapsis" and type(ttt.g_proj).__name__ == "QSynapsis" and model.mode == "qat"
    logits.logsumexp(-1).mean().backward()
    assert ttt.q_proj.weight.grad is not None and ttt.W1.grad is not None and ttt.g_proj.weight.grad is not None


def test_the_inner_loop_is_counted_as_float_work():
    model = tiny()
    with OpCounter(model) as counter, torch.no_grad():
        model(torch.randint(0, 97, (1, 8)))
    assert counter.totals["model.layers.0.seq_modeling_block"].float_ops > 0
    assert counter.totals["model.layers.0.seq_modeling_block.q_proj"].Effective_MACs > 0


def test_the_150m_preset_and_unknown_presets():
    big = TTTConfig.preset("150m")
    assert (big.hidden_size, big.num_hidden_layers, big.num_attention_heads, big.mini_batch_size) == (768, 12, 12, 16)
    with pytest.raises(ValueError, match="unknown ttt preset"):
        TTTConfig.preset("1b")
