"""Mamba-2: equal to transformers' implementation, chunked SSD == recurrence, the recurrent state as a
generation cache, padding never changes the state, gradients flow, configs and presets."""

import pytest
import torch

from models.arch.llama import LlamaConfig, LlamaForCausalLM
from models.arch.mamba2 import Mamba2Cache, Mamba2Config, Mamba2ForCausalLM, ssd_chunked, ssd_recurrent
from models.arch.registry import architecture
from models.arch.spiking_config import SpikingConfig
from models.spiking import OpCounter

TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, state_size=8, head_dim=16, chunk_size=4)


def tiny(mode: str = "ann", seed: int = 0, **config) -> Mamba2ForCausalLM:
    torch.manual_seed(seed)
    return Mamba2ForCausalLM(Mamba2Config(**{**TINY, **config}), SpikingConfig(mode=mode)).eval()


def test_ann_equals_transformers_mamba2():
    from transformers import Mamba2Config as HFConfig
    from transformers import Mamba2ForCausalLM as HFMamba2

    torch.manual_seed(0)
    hf_config = HFConfig(
        vocab_size=97, hidden_size=32, num_hidden_layers=2, state_size=8, head_dim=16, num_heads=4, expand=2, n_groups=1,
        chunk_size=4, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
    )
    hf = HFMamba2(hf_config).eval()
    for name, p in hf.named_parameters():  # move D, dt_bias and the norms off their initial values
        if name.endswith(("D", "dt_bias", "norm.weight", "norm_f.weight")):
            torch.nn.init.normal_(p, mean=float(not name.endswith("dt_bias")), std=0.3)
    ours = Mamba2ForCausalLM(Mamba2Config(**TINY), init_weights=False)
    assert ours.load_state_dict(hf.state_dict(), strict=True)
    ids = torch.randint(0, 97, (3, 11))  # 11 is not a multiple of the chunk size
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max() < 1e-4


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 8])
@pytest.mark.parametrize("length", [1, 7, 13])
def test_chunked_ssd_equals_the_recurrence(chunk_size, length):
    g = torch.Generator().manual_seed(chunk_size * 100 + length)
    b, h, p, n = 2, 3, 4, 5
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    x, B, C, state = r(b, length, h, p), r(b, length, n), r(b, length, n), r(b, h, p, n)
    dt = torch.rand(b, length, h, generator=g, dtype=torch.float64) * 2
    A = -torch.rand(h, generator=g, dtype=torch.float64) * 4
    inputs = [t.requires_grad_() for t in (x, dt, A, B, C, state)]
    y_weight, state_weight = r(b, length, h, p), r(b, h, p, n)
    for initial in (None, state):
        y, final = ssd_chunked(x, dt, A, B, C, chunk_size, initial)
        y_ref, final_ref = ssd_recurrent(x, dt, A, B, C, initial)
        assert torch.allclose(y, y_ref, atol=1e-12, rtol=1e-10)
        assert torch.allclose(final, final_ref, atol=1e-12, rtol=1e-10)
        # and the same gradients (training runs the chunked form)
        objective = lambda y, s: (y * y_weight).sum() + (s * state_weight).sum()  # noqa: E731
        grads = torch.autograd.grad(objective(y, final), inputs, allow_unused=True)
        grads_ref = torch.autograd.grad(objective(y_ref, final_ref), inputs, allow_unused=True)
        for got, ref in zip(grads, grads_ref):
            assert (got is None and ref is None) or torch.allclose(got, ref, atol=1e-10, rtol=1e-9)


def test_chunked_ssd_is_stable_under_strong_decay():
    x, B, C = torch.randn(1, 64, 2, 4), torch.randn(1, 64, 3), torch.randn(1, 64, 3)
    dt, A = torch.full((1, 64, 2), 5.0), torch.tensor([-8.0, -0.01])
    y, state = ssd_chunked(x, dt, A, B, C, 64)
    y_ref, state_ref = ssd_recurrent(x, dt, A, B, C)
    assert torch.isfinite(y).all() and torch.allclose(y, y_ref, atol=1e-4)


def test_cache_continuation_equals_recomputing():
    model = tiny()
    ids = torch.randint(0, 97, (2, 14))
    with torch.no_grad():
        full, _ = model(ids)
        cache, parts = None, []
        for a, b in [(0, 5), (5, 6), (6, 11), (11, 12), (12, 14)]:  # chunked and one-token (recurrent) steps
            logits, cache = model(ids[:, a:b], cache=cache, use_cache=True)
            parts.append(logits)
        assert isinstance(cache, Mamba2Cache)
        assert (torch.cat(parts, 1) - full).abs().max() < 1e-5
        fresh, _ = model(ids[:, 12:14])
        assert (fresh - full[:, 12:14]).abs().max() > 1e-3  # the state matters


def test_greedy_generate_equals_recomputing_the_whole_sequence():
    model = tiny()
    prompt = torch.randint(0, 97, (2, 6))
    generated = model.greedy_generate(prompt, 7)
    seq = prompt
    with torch.no_grad():
        for _ in range(7):
            seq = torch.cat([seq, model(seq)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generated, seq[:, 6:])
    stop = int(generated[0, 2])
    stopped = model.greedy_generate(prompt[:1], 7, stop_ids=(stop,))
    assert stopped.shape[1] <= 3 and int(stopped[0, -1]) == stop


def test_padding_does_not_change_scores_or_state():
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
            for mine, ref in zip(cache.conv_states + cache.ssm_states, alone_cache.conv_states + alone_cache.ssm_states):
                assert (mine[:1] - ref).abs().max() < 1e-6
        # padding inside a continuation: the real token sees the state of the real tokens only
        first_row = Mamba2Cache([s[:1] for s in right_cache.conv_states], [s[:1] for s in right_cache.ssm_states])
        nxt = torch.randint(1, 97, (1, 1))
        padded, _ = model(torch.cat([pad[:, :2], nxt], 1), torch.tensor([[0, 0, 1]]), cache=first_row)
        ref, _ = model(nxt, cache=alone_cache)
        assert (padded[0, 2] - ref[0, 0]).abs().max() < 1e-5


def test_a_shared_context_cache_expands_to_a_padded_batch():
    model = tiny()
    context, tails = torch.randint(0, 97, (1, 5)), [torch.randint(0, 97, (1, n)) for n in (1, 3)]
    with torch.no_grad():
        _, cache = model(context, use_cache=True)
        ids = torch.zeros(2, 3, dtype=torch.long)
        mask = torch.zeros(2, 3, dtype=torch.long)
        for j, tail in enumerate(tails):
            ids[j, : tail.shape[1]], mask[j, : tail.shape[1]] = tail[0], 1
        batched, _ = model(ids, mask, cache=cache.expand(2))
        for j, tail in enumerate(tails):
            alone, _ = model(tail, cache=cache)
            assert (batched[j, : tail.shape[1]] - alone[0]).abs().max() < 1e-5


def test_training_steps_lower_the_loss():
    model = tiny().train()
    ids = torch.randint(0, 97, (4, 24), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        logits, _ = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 97), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in model.parameters())
    assert losses[-1] < losses[0] - 0.5


def test_qat_mode_runs_forward_and_backward():
    model = tiny("qat").train()
    ids = torch.randint(0, 97, (2, 9))
    logits, _ = model(ids, torch.tensor([[0, 0] + [1] * 7, [1] * 9]))
    assert type(model.lm_head).__name__ == "QSynapsis" and model.mode == "qat"
    logits.logsumexp(-1).mean().backward()
    assert model.backbone.layers[0].mixer.in_proj.weight.grad is not None
    assert model.backbone.layers[0].mixer.A_log.grad is not None


def test_the_scan_is_counted_as_float_work():
    model = tiny()
    with OpCounter(model) as counter, torch.no_grad():
        model(torch.randint(0, 97, (1, 8)))
    mixer = counter.totals["backbone.layers.0.mixer"]
    assert mixer.float_ops > 0 and counter.totals["backbone.layers.0.mixer.in_proj"].Effective_MACs > 0


def test_config_round_trip_presets_and_registry():
    config = Mamba2Config(**TINY)
    d = config.to_dict()
    assert d["architecture"] == "mamba2" and Mamba2Config.from_dict(d) == config
    assert architecture("mamba2") == (Mamba2Config, Mamba2ForCausalLM)
    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=10000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256),
        init_weights=False,
    ).num_parameters()
    tiny_params = Mamba2ForCausalLM(Mamba2Config.preset("tiny"), init_weights=False).num_parameters()
    assert abs(tiny_params / llama - 1) < 0.1
    big = Mamba2Config.preset("150m")
    assert (big.hidden_size, big.num_hidden_layers, big.state_size, big.num_heads) == (768, 24, 128, 24)
    assert Mamba2Config.preset("150m", vocab_size=32000).vocab_size == 32000


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(hidden_size=0), "hidden_size"),
        (dict(head_dim=48), "head_dim"),
        (dict(chunk_size=-1), "chunk_size"),
        (dict(conv_kernel=1), "conv_kernel"),
        (dict(rms_norm_eps=0.0), "rms_norm_eps"),
        (dict(dt_min=0.5, dt_max=0.1), "dt_min"),
        (dict(state_size=2.5), "state_size"),
    ],
)
def test_bad_config_values_give_one_line_errors(bad, field):
    with pytest.raises(ValueError) as info:
        Mamba2Config(**{**TINY, **bad})
    assert field in str(info.value) and "\n" not in str(info.value)


def test_bad_keys_presets_and_inputs():
    with pytest.raises(ValueError, match="unknown keys"):
        Mamba2Config.from_dict({"architecture": "mamba2", "d_model": 64})
    with pytest.raises(ValueError, match="unknown mamba2 preset"):
        Mamba2Config.preset("7b")
    model = tiny()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[97]]))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 2))
    _, cache = model(torch.zeros(1, 3, dtype=torch.long), use_cache=True)
    with pytest.raises(ValueError, match="batch size"):
        model(torch.zeros(2, 1, dtype=torch.long), cache=cache)
