"""GPT-2: equal to transformers in ann mode, snn == snn-fused, qat == snn-fused, KV cache, padding,
checkpoints, the new operators (SNNLayerNorm, SNNGELU and its fit), bad input."""

import pytest
import torch
import torch.nn.functional as F

from models.arch.gpt2 import GPT2Config, GPT2ForCausalLM, from_transformers_state_dict
from models.arch.spiking_config import SpikingConfig
from models.spiking import OpCounter
from models.spiking.norms import SNNLayerNorm
from models.spiking.gelu import SNNGELU, fit_snn_gelu
from models.spiking.quant import QuantSpec

TINY = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32)


def tiny(mode: str = "ann", seed: int = 0, **config) -> GPT2ForCausalLM:
    torch.manual_seed(seed)
    return GPT2ForCausalLM(GPT2Config(**{**TINY, **config}), SpikingConfig(mode=mode)).eval()


def same_weights(model: GPT2ForCausalLM, mode: str, bits: int = 8) -> GPT2ForCausalLM:
    """The same weights in ``mode``; the time-stepped tests use 5 bits (T = 15) to stay fast."""
    other = GPT2ForCausalLM(model.config, SpikingConfig(mode=mode, bits=bits), init_weights=False)
    other.load_state_dict(model.state_dict(), strict=False)
    return other.eval()


@pytest.mark.parametrize("activation, tie", [("gelu_new", True), ("gelu", False)])
def test_ann_equals_transformers_gpt2(activation, tie):
    from transformers import GPT2Config as HFConfig
    from transformers import GPT2LMHeadModel

    config = GPT2Config(**TINY, activation_function=activation, tie_word_embeddings=tie)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(HFConfig(**config.transformers_config(), bos_token_id=0, eos_token_id=0)).eval()
    for name, p in hf.named_parameters():  # non-trivial biases and LayerNorm parameters
        if name.endswith("bias") or ".ln_" in name:
            torch.nn.init.normal_(p, std=0.3)
    ours = GPT2ForCausalLM(config, init_weights=False)
    assert ours.load_state_dict(from_transformers_state_dict(hf.state_dict()), strict=True)  # names map one to one
    ids = torch.randint(0, 97, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding; transformers needs the positions of the real tokens given
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=positions).logits
        got, _ = ours(ids, attention_mask=mask)
    assert (got - expected)[mask.bool()].abs().max() < 1e-4


def test_snn_equals_snn_fused_and_qat_bit_for_bit():
    ann = tiny()
    ids = torch.randint(0, 97, (2, 6))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    with torch.no_grad():
        fused, _ = same_weights(ann, "snn-fused")(ids, mask)
        qat, _ = same_weights(ann, "qat")(ids, mask)
        stepped5, _ = same_weights(ann, "snn", bits=5)(ids, mask)
        fused5, _ = same_weights(ann, "snn-fused", bits=5)(ids, mask)
        float_logits, _ = ann(ids, mask)
    assert torch.equal(stepped5, fused5)
    assert torch.equal(qat, fused)  # lossless conversion
    assert 0 < (fused - float_logits)[mask.bool()].abs().max() < 0.1  # close to the float model, not equal


def test_counters_agree_between_snn_and_fused():
    ann = tiny()
    ids = torch.randint(0, 97, (1, 5))
    totals = {}
    for mode in ("snn", "snn-fused"):
        model = same_weights(ann, mode, bits=5)
        with OpCounter(model) as counter, torch.no_grad():
            model(ids)
        totals[mode] = counter.total()
    for name in ("spikes", "neuron_steps", "Effective_ACs", "Effective_MACs", "Dense"):
        assert getattr(totals["snn"], name) == getattr(totals["snn-fused"], name), name
    # float work differs by design: the time-stepped softmax evaluates its function at every step
    assert totals["snn"].Effective_ACs > 0 and totals["snn"].Effective_MACs == 0


@pytest.mark.parametrize("mode", ["ann", "qat", "snn-fused", "snn"])
def test_a_sequence_scores_the_same_alone_and_in_a_padded_batch(mode):
    model = same_weights(tiny(), mode, bits=4 if mode == "snn" else 8)
    seq = torch.randint(0, 97, (1, 6))
    other = torch.randint(0, 97, (1, 9))
    with torch.no_grad():
        alone, _ = model(seq)
        right = torch.cat([torch.cat([seq, torch.zeros(1, 3, dtype=torch.long)], 1), other])
        right_mask = torch.cat([torch.cat([torch.ones(1, 6), torch.zeros(1, 3)], 1), torch.ones(1, 9)]).long()
        left = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), seq], 1), other])
        left_mask = torch.cat([torch.cat([torch.zeros(1, 3), torch.ones(1, 6)], 1), torch.ones(1, 9)]).long()
        right_logits, _ = model(right, attention_mask=right_mask)
        left_logits, _ = model(left, attention_mask=left_mask)
    assert torch.allclose(right_logits[:1, :6], alone, atol=1e-4)
    assert torch.allclose(left_logits[:1, 3:], alone, atol=1e-4)


@pytest.mark.parametrize("mode", ["ann", "snn-fused"])
def test_kv_cache_equals_recomputing(mode):
    model = same_weights(tiny(), mode)
    prompt = torch.randint(0, 97, (2, 4))
    generated = model.greedy_generate(prompt, max_new_tokens=5)
    ids = prompt
    with torch.no_grad():
        for _ in range(5):
            ids = torch.cat([ids, model(ids)[0][:, -1].argmax(-1, keepdim=True)], 1)
        _, cache = model(prompt, use_cache=True)
        step, _ = model(ids[:, 4:5], cache=cache)
        full, _ = model(ids[:, :5])
    assert torch.equal(generated, ids[:, 4:])
    assert torch.allclose(step[:, -1], full[:, -1], atol=1e-4)
    _, one = model(prompt[:1], use_cache=True)
    assert one.expand(3).keys[0].shape[0] == 3


def test_checkpoint_round_trip_with_tied_embeddings(tmp_path):
    from models.load import load_checkpoint, save_checkpoint

    model = tiny("snn-fused")
    save_checkpoint(model, tmp_path)
    loaded = load_checkpoint(tmp_path).model
    ids = torch.randint(0, 97, (1, 5))
    with torch.no_grad():
        assert torch.equal(loaded(ids)[0], model(ids)[0])
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_snn_gelu_fit_error_is_reported_and_small():
    for approximate in ("none", "tanh"):
        fit = fit_snn_gelu(127, 8.0, approximate)
        half_step = F.gelu(torch.tensor(8.0, dtype=torch.float64)).item() / (127 - 0.5) / 2
        assert fit.max_abs_error <= half_step * 1.001  # the staircase's L-infinity optimum on the rising branch
        assert fit.mean_abs_error < 0.01
        assert set(fit.neg_amplitudes.sign().tolist()) == {-1.0, 1.0}  # ternary negative neuron
    errors = [fit_snn_gelu(T, 8.0).max_abs_error for T in (15, 31, 63, 127)]
    assert errors == sorted(errors, reverse=True)
    op = SNNGELU(63, 6.0, "tanh")
    x = torch.linspace(-6, 6, 20001, dtype=torch.float64)
    assert (op(x) - F.gelu(x, approximate="tanh")).abs().max().item() == pytest.approx(op.fit.max_abs_error, rel=0.05)
    assert "max_abs_error" in repr(op)


def test_snn_gelu_paths_and_qat_gradient():
    x = torch.cat([torch.linspace(-9, 9, 301), fit_snn_gelu(31, 8.0).pos_thresholds.float()])
    with OpCounter() as fused_counter:
        fused = SNNGELU(31, 8.0, mode="snn-fused")(x)
    with OpCounter() as stepped_counter:
        stepped = SNNGELU(31, 8.0, mode="snn")(x)
    assert torch.equal(fused, stepped) and fused_counter.total() == stepped_counter.total()
    xq = x.clone().requires_grad_(True)
    out = SNNGELU(31, 8.0, mode="qat")(xq)
    assert torch.equal(out.detach(), fused)
    out.sum().backward()
    reference = x.clone().requires_grad_(True)
    F.gelu(reference).sum().backward()
    assert torch.allclose(xq.grad, reference.grad)


def test_snn_layernorm_paths():
    torch.manual_seed(0)
    spec = QuantSpec(bits=8)
    x = torch.randn(3, 5, 16) * 3
    ops = {path: SNNLayerNorm(16, 1e-5, spec, path) for path in ("qat", "snn", "snn-fused")}
    for op in ops.values():
        with torch.no_grad():
            op.weight.copy_(torch.linspace(0.5, 2, 16))
            op.bias.copy_(torch.linspace(-1, 1, 16))
    with torch.no_grad():
        outs = {path: op(x) for path, op in ops.items()}
    assert torch.equal(outs["snn"], outs["snn-fused"]) and torch.equal(outs["qat"], outs["snn-fused"])
    exact = F.layer_norm(x, (16,), ops["qat"].weight, ops["qat"].bias, 1e-5)
    assert 0 < (outs["snn"] - exact).abs().max() < 0.05
    with pytest.raises(ValueError, match="last dimension 16"):
        ops["qat"](torch.randn(2, 8))


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="attention must be one of"):
        GPT2Config(**TINY, attention="linear")
    with pytest.raises(ValueError, match="divisible by num_attention_heads"):
        GPT2Config(**{**TINY, "num_attention_heads": 5})
    with pytest.raises(ValueError, match="activation_function"):
        GPT2Config(**TINY, activation_function="relu")
    with pytest.raises(ValueError, match="unknown keys"):
        GPT2Config.from_dict({"architecture": "gpt2", "n_embd": 3})
    assert GPT2Config.from_dict(GPT2Config(**TINY).to_dict()) == GPT2Config(**TINY)
    model = tiny()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[5, 97]]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="approximate must be one of"):
        SNNGELU(15, 8.0, "erf")
