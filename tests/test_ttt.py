"""TTT-Linear: the inner loop is gradient descent on the reconstruction loss (checked with autograd),
mini-batch semantics, the inner-loop state as a generation cache, padding never updates W,
gradients flow, configs and presets."""

import pytest
import torch
import torch.nn.functional as F

from models.arch.llama import LlamaConfig, LlamaForCausalLM
from models.arch.registry import architecture
from models.arch.spiking_config import SpikingConfig
from models.arch.ttt import TTTCache, TTTConfig, TTTForCausalLM, TTTLinear, TTTState
from models.arch.operators import Operators
from models.spiking import OpCounter

TINY = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, mini_batch_size=4)


def randomize_inner_model(module: torch.nn.Module, seed: int = 0) -> None:
    """Move W_0, b_0, the inner LN and the learning-rate gate off their initial values, so the test sees them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.split(".")[-1] in ("W1", "b1", "ttt_norm_weight", "ttt_norm_bias", "learnable_token_idx") or "lr_proj" in name:
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


def tiny(mode: str = "ann", seed: int = 0, **config) -> TTTForCausalLM:
    torch.manual_seed(seed)
    model = TTTForCausalLM(TTTConfig(**{**TINY, **config}), SpikingConfig(mode=mode))
    randomize_inner_model(model, seed)
    return model.eval()


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


def test_cache_continuation_equals_recomputing():
    model = tiny()
    ids = torch.randint(0, 97, (2, 14))
    with torch.no_grad():
        full, _ = model(ids)
        cache, parts = None, []
        for a, b in [(0, 3), (3, 4), (4, 9), (9, 10), (10, 11), (11, 14)]:  # calls start and end inside mini-batches
            logits, cache = model(ids[:, a:b], cache=cache, use_cache=True)
            parts.append(logits)
        assert isinstance(cache, TTTCache) and cache.count.tolist() == [14 % 4] * 2
        assert (torch.cat(parts, 1) - full).abs().max() < 1e-5
        fresh, _ = model(ids[:, 11:14])
        assert (fresh - full[:, 11:14]).abs().max() > 1e-3  # the state matters


def test_greedy_generate_equals_recomputing_the_whole_sequence():
    model = tiny()
    prompt = torch.randint(0, 97, (2, 6))
    generated = model.greedy_generate(prompt, 7)
    seq = prompt
    with torch.no_grad():
        for _ in range(7):
            seq = torch.cat([seq, model(seq)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generated, seq[:, 6:])


def test_padding_does_not_update_w():
    model = tiny()
    seq, other = torch.randint(1, 97, (1, 6)), torch.randint(1, 97, (1, 9))
    pad = torch.zeros(1, 3, dtype=torch.long)
    real_then_pad = torch.tensor([[1] * 6 + [0] * 3, [1] * 9])
    pad_then_real = torch.tensor([[0] * 3 + [1] * 6, [1] * 9])
    with torch.no_grad():
        alone, alone_cache = model(seq, use_cache=True)
        right, right_cache = model(torch.cat([torch.cat([seq, pad], 1), other]), real_then_pad, use_cache=True)
        left, left_cache = model(torch.cat([torch.cat([pad, seq], 1), other]), pad_then_real, use_cache=True)
        assert (right[0, :6] - alone[0]).abs().max() < 1e-5
        assert (left[0, 3:] - alone[0]).abs().max() < 1e-5
        for cache in (right_cache, left_cache):
            assert cache.count.tolist() == [6 % 4, 9 % 4]
            for mine, ref in zip(cache.states, alone_cache.states):
                for a, b in ((mine.W, ref.W), (mine.b, ref.b), (mine.grad_W, ref.grad_W), (mine.grad_b, ref.grad_b)):
                    assert (a[:1] - b).abs().max() < 1e-6
        # padding inside a continuation, and a batch-1 cache shared by a right-padded batch
        tails = torch.tensor([[5, 0, 0], [7, 8, 9]])
        batched, _ = model(tails, torch.tensor([[1, 0, 0], [1, 1, 1]]), cache=alone_cache.expand(2))
        for j, n in enumerate((1, 3)):
            ref, _ = model(tails[j : j + 1, :n], cache=alone_cache)
            assert (batched[j, :n] - ref[0]).abs().max() < 1e-5


def test_training_steps_lower_the_loss():
    model = tiny().train()
    ids = torch.randint(0, 97, (4, 24), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 97), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    ttt = model.model.layers[0].seq_modeling_block
    assert all(p.grad is not None for p in (ttt.W1, ttt.b1, ttt.ttt_norm_weight, ttt.lr_proj.weight, ttt.learnable_token_idx))
    assert losses[-1] < losses[0] - 0.5


def test_qat_mode_runs_forward_and_backward():
    model = tiny("qat", use_gate=True).train()
    ids = torch.randint(0, 97, (2, 9))
    logits, _ = model(ids, torch.tensor([[0, 0] + [1] * 7, [1] * 9]))
    ttt = model.model.layers[0].seq_modeling_block
    assert type(ttt.q_proj).__name__ == "QSynapsis" and model.mode == "qat"
    logits.logsumexp(-1).mean().backward()
    assert ttt.q_proj.weight.grad is not None and ttt.W1.grad is not None and ttt.g_proj.weight.grad is not None


def test_the_inner_loop_is_counted_as_float_work():
    model = tiny()
    with OpCounter(model) as counter, torch.no_grad():
        model(torch.randint(0, 97, (1, 8)))
    assert counter.totals["model.layers.0.seq_modeling_block"].float_ops > 0
    assert counter.totals["model.layers.0.seq_modeling_block.q_proj"].Effective_MACs > 0


def test_config_round_trip_presets_and_registry():
    config = TTTConfig(**TINY)
    d = config.to_dict()
    assert d["architecture"] == "ttt" and TTTConfig.from_dict(d) == config
    assert architecture("ttt") == (TTTConfig, TTTForCausalLM)
    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=10000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256),
        init_weights=False,
    ).num_parameters()
    tiny_params = TTTForCausalLM(TTTConfig.preset("tiny"), init_weights=False).num_parameters()
    assert abs(tiny_params / llama - 1) < 0.1
    big = TTTConfig.preset("150m")
    assert (big.hidden_size, big.num_hidden_layers, big.num_attention_heads, big.mini_batch_size) == (768, 12, 12, 16)


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(hidden_size=30), "hidden_size"),
        (dict(num_attention_heads=0), "num_attention_heads"),
        (dict(mini_batch_size=0), "mini_batch_size"),
        (dict(ttt_base_lr=0.0), "ttt_base_lr"),
        (dict(hidden_size=24, num_attention_heads=8), "head_dim"),
        (dict(vocab_size=True), "vocab_size"),
    ],
)
def test_bad_config_values_give_one_line_errors(bad, field):
    with pytest.raises(ValueError) as info:
        TTTConfig(**{**TINY, **bad})
    assert field in str(info.value) and "\n" not in str(info.value)


def test_bad_keys_presets_and_inputs():
    with pytest.raises(ValueError, match="unknown keys"):
        TTTConfig.from_dict({"architecture": "ttt", "share_qk": True})
    with pytest.raises(ValueError, match="unknown ttt preset"):
        TTTConfig.preset("1b")
    model = tiny()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[-1]]))
    _, cache = model(torch.zeros(1, 3, dtype=torch.long), use_cache=True)
    with pytest.raises(ValueError, match="batch size"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=cache)
