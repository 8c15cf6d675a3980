"""GPT-2: equal to transformers in ann mode, the operators it brought (SNNLayerNorm, SNNGELU and its fit), config errors
(the contract every architecture keeps: test_architectures_contract.py)."""

import pytest
import torch
import torch.nn.functional as F

from models.arch.gpt2 import GPT2Config, GPT2ForCausalLM, from_transformers_state_dict
from models.spiking import OpCounter
from models.spiking.norms import SNNLayerNorm
from models.spiking.gelu import SNNGELU, fit_snn_gelu
from models.spiking.quant import QuantSpec
from tests.tiny_models import TINY as TINY_MODELS
from tests.tiny_models import tiny_model

TINY = TINY_MODELS["gpt2"]


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


def test_bad_config_and_too_long_input():
    with pytest.raises(ValueError, match="attention must be one of"):
        GPT2Config(**TINY, attention="linear")
    with pytest.raises(ValueError, match="divisible by num_attention_heads"):
        GPT2Config(**{**TINY, "num_attention_heads": 5})
    with pytest.raises(ValueError, match="activation_function"):
        GPT2Config(**TINY, activation_function="relu")
    with pytest.raises(ValueError, match="unknown keys"):
        GPT2Config.from_dict({"architecture": "gpt2", "n_embd": 3})
    assert GPT2Config.from_dict(GPT2Config(**TINY).to_dict()) == GPT2Config(**TINY)
    model = tiny_model("gpt2")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="approximate must be one of"):
        SNNGELU(15, 8.0, "erf")
