"""Spike-based self-attention (NeurTransformer) and surrogate gradients: the forward is spiking, every
surrogate's derivative is its formula, gradients reach every SSA parameter, and the GPT-2 with SSA keeps
the model contract (qat == snn == snn-fused, KV cache, padding) and is counted as spike-driven work."""

import math
from dataclasses import replace

import pytest
import torch

from harness.experiments.neurtransformer import attention_costs
from models.arch.base import calibrated_keys
from models.arch.gpt2 import GPT2Config, GPT2ForCausalLM
from models.arch.spiking_config import SpikingConfig
from models.convert import convert, swap_mode
from models.spiking import OpCounter
from models.spiking.ssa import SpikingSelfAttention, if_neuron
from models.spiking.surrogate import SURROGATES, spike, ternary_spike

TINY = dict(vocab_size=61, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32)


def formula(name: str, x: torch.Tensor, alpha: float) -> torch.Tensor:
    if name == "atan":
        return alpha / (2 * (1 + (math.pi / 2 * alpha * x) ** 2))
    s = torch.sigmoid(alpha * x)
    return alpha * s * (1 - s)


@pytest.mark.parametrize("name", sorted(SURROGATES))
@pytest.mark.parametrize("alpha", [None, 3.0])
def test_surrogate_derivative_matches_its_formula(name, alpha):
    x = torch.linspace(-3, 3, 121, dtype=torch.float64, requires_grad=True)
    out = spike(x, name, alpha)
    assert torch.equal(out.detach(), (x >= 0).double())  # forward: the Heaviside step
    out.sum().backward()
    a = SURROGATES[name][2] if alpha is None else alpha
    assert torch.allclose(x.grad, formula(name, x.detach(), a))
    assert bool((x.grad > 0).all())  # nonzero everywhere
    primitive = x.detach().clone().requires_grad_(True)
    SURROGATES[name][1](primitive, a).sum().backward()  # sigma' is the derivative of sigma
    assert torch.allclose(x.grad, primitive.grad)


def test_surrogate_names_and_alpha_are_checked():
    with pytest.raises(ValueError, match="surrogate must be one of"):
        spike(torch.zeros(2), "rectangle")
    with pytest.raises(ValueError, match="alpha must be"):
        spike(torch.zeros(2), "atan", -1.0)
    with pytest.raises(ValueError, match="ssa_surrogate"):
        GPT2Config(**TINY, attention="ssa", ssa_surrogate="relu")


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_ternary_spike_equals_two_heaviside_spikes(name):
    v = torch.linspace(-2, 2, 81, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    fused = ternary_spike(v, theta, name)
    (fused * torch.arange(81)).sum().backward()
    v2 = v.detach().clone().requires_grad_(True)
    theta2 = theta.detach().clone().requires_grad_(True)
    composed = spike(v2 / theta2 - 0.5, name) - spike(-v2 / theta2 - 0.5, name)
    (composed * torch.arange(81)).sum().backward()
    assert torch.equal(fused.detach(), composed.detach())
    assert set(fused.detach().tolist()) == {-1.0, 0.0, 1.0}
    assert torch.allclose(v.grad, v2.grad) and torch.allclose(theta.grad, theta2.grad)


def test_if_neuron_counts_round_and_clamp():
    T = 8
    c = torch.tensor([0.0, 0.1, 0.3, -0.3, 0.55, 0.99, 2.0, -5.0])
    counts = if_neuron(c.expand(T, -1), torch.tensor(1.0)).sum(0)
    expected = torch.sign(c) * torch.clamp(torch.floor(T * c.abs() + 0.5), max=T)
    assert torch.equal(counts, expected)


def tiny(mode: str = "qat", seed: int = 0, surrogate: str = "atan", bits: int = 8) -> GPT2ForCausalLM:
    """A float GPT-2 converted to SSA by the shared stage 2 and calibrated on random text (NeurTransformer's steps 1-2)."""
    torch.manual_seed(seed)
    ann = GPT2ForCausalLM(GPT2Config(**TINY)).eval()
    batches = [torch.randint(0, 61, (4, 12))]
    ssa = replace(ann.config, attention="ssa", ssa_time_steps=4, ssa_surrogate=surrogate)
    qat = convert(ann, batches, SpikingConfig(bits=bits), config=ssa).qat
    return (qat if mode == "qat" else swap_mode(qat, qat.spiking.with_mode(mode))).eval()


def causal(length: int) -> torch.Tensor:
    return torch.ones(1, 1, length, length, dtype=torch.bool).tril()


def test_the_shared_conversion_calibrates_ssa_and_gelu_to_the_float_model():
    """SSA's spike values are fitted (none left at their initial values), each GELU's range is its layer's own."""
    torch.manual_seed(0)
    ann = GPT2ForCausalLM(GPT2Config(**TINY)).eval()
    ssa = replace(ann.config, attention="ssa", ssa_time_steps=4)
    conversion = convert(ann, [torch.randint(0, 61, (4, 12))], SpikingConfig(), config=ssa)
    fresh = GPT2ForCausalLM(ssa, SpikingConfig(mode="qat"), init_weights=False).state_dict()
    state = conversion.qat.state_dict()
    assert calibrated_keys(conversion.qat) == {f"transformer.h.{i}.attn.{n}" for i in range(2) for n in SpikingSelfAttention.calibrated_state}
    assert all(not torch.equal(state[k], fresh[k]) for k in calibrated_keys(conversion.qat))
    ranges = conversion.stats.ranges()["gelu"]
    assert set(ranges) == {0, 1} and [conversion.snn.transformer.h[i].mlp.act.fit.x_max for i in (0, 1)] == [ranges[0], ranges[1]]
    with pytest.raises(ValueError, match="no float twin"):  # calibrated state needs a float block at the same path
        convert(conversion.qat.__class__(ssa, init_weights=False), [torch.randint(0, 61, (1, 4))], SpikingConfig(), config=ssa)


def test_ssa_forward_is_spiking():
    model = tiny("snn-fused")
    seen = []

    def check(module, args):
        q, k, v, mask = args
        for t in (q, k, v):
            values = set(torch.unique(t).tolist())
            assert values <= {-1.0, 0.0, 1.0}, values
            seen.append(values)

    hooks = [m.register_forward_pre_hook(check) for m in model.modules() if type(m).__name__ == "SpikeProduct"]
    assert len(hooks) == 2
    with torch.no_grad():
        model(torch.randint(0, 61, (2, 9)))
    assert len(seen) == 6 and any(len(v) == 3 for v in seen)  # ternary spikes do occur


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_surrogate_gradients_reach_every_ssa_parameter(name):
    model = tiny("qat", surrogate=name).train()
    ids = torch.randint(0, 61, (3, 10))
    logits, hidden, _ = model.forward_hidden(ids)
    (torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 61), ids[:, 1:].reshape(-1)) + hidden[0].pow(2).mean()).backward()
    for module in model.modules():
        if isinstance(module, SpikingSelfAttention):
            assert module.surrogate == name
            for pname, p in module.named_parameters():
                assert p.grad is not None and bool(p.grad.abs().sum() > 0), pname


def test_ssa_model_keeps_the_contract():
    qat = tiny("qat", bits=4)  # T = 7 for the converted rest keeps the time-stepped run short
    ids = torch.randint(0, 61, (2, 7))
    outputs = {}
    with torch.no_grad():
        for mode in ("qat", "snn", "snn-fused"):
            model = GPT2ForCausalLM(qat.config, qat.spiking.with_mode(mode), init_weights=False)
            model.load_state_dict(qat.state_dict(), strict=False)
            outputs[mode] = model.eval()(ids)[0]
    assert torch.equal(outputs["qat"], outputs["snn"]) and torch.equal(outputs["qat"], outputs["snn-fused"])
    model = qat
    with torch.no_grad():  # KV cache (the cache holds K and V spike trains) == recomputing
        _, cache = model(ids[:, :4], use_cache=True)
        step, _ = model(ids[:, 4:], cache=cache)
        full, _ = model(ids)
        assert torch.allclose(step, full[:, 4:], atol=1e-4)
        generated = model.greedy_generate(ids[:1, :3], 3)
        assert generated.shape == (1, 3)
        seq = ids[:1, :5]  # a sequence scores the same alone and left-padded
        left = torch.cat([torch.zeros(1, 2, dtype=torch.long), seq], 1)
        mask = torch.cat([torch.zeros(1, 2), torch.ones(1, 5)], 1).long()
        assert torch.allclose(model(left, mask)[0][:, 2:], model(seq)[0], atol=1e-4)


def test_ssa_block_is_counted_as_spike_driven_work():
    snn = tiny("snn-fused")
    torch.manual_seed(1)
    ann = GPT2ForCausalLM(GPT2Config(**TINY)).eval()
    windows = torch.randint(0, 61, (2, 12))
    ssa_cost, _ = attention_costs(snn, windows)
    asa, ssa = attention_costs(ann, windows)[0].ops, ssa_cost.ops
    assert ssa_cost.tokens == 24
    assert ssa.Effective_ACs > 0 and ssa.Effective_MACs == 0 and ssa.spikes > 0 and 0 < ssa.activation_sparsity < 1
    assert asa.Effective_MACs > 0 and asa.Effective_ACs == 0 and asa.float_ops > 0
    with OpCounter(snn) as counter, torch.no_grad():
        snn(windows)
    names = set(counter.totals)
    assert {"transformer.h.0.attn", "transformer.h.0.attn.c_attn", "transformer.h.0.attn.product", "transformer.h.0.attn.c_proj"} <= names


def test_ssa_bad_arguments():
    with pytest.raises(ValueError, match="time_steps"):
        SpikingSelfAttention(16, 2, time_steps=0)
    with pytest.raises(ValueError, match="divisible"):
        SpikingSelfAttention(15, 2)
    with pytest.raises(ValueError, match="x contains NaN"):
        SpikingSelfAttention(16, 2)(torch.full((1, 2, 16), float("nan")), causal(2))
