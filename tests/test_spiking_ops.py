"""The operators the decoder adds to the core: SNNMultiply, spike-coded attention values, masked
softmax, smoothed (per-token x per-channel) scales, SpikeEncoder."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.spiking import OpCounter, QSynapsis, QuantSpec, SNNSoftmax, Synapsis
from models.spiking.encode import SpikeEncoder
from models.spiking.products import SNNMultiply, SpikingAttentionValues
from models.spiking.quant import Quantizer


@given(st.integers(0, 2**16), st.integers(1, 40), st.integers(1, 40))
def test_multiply_paths_agree_bit_for_bit(seed, Ta, Tb):
    torch.manual_seed(seed)
    a, b = torch.randn(2, 3, 8) * 3, torch.randn(2, 3, 8)
    out, totals = {}, {}
    for path in ("snn", "snn-fused", "qat"):
        with OpCounter() as counter:
            out[path] = SNNMultiply(QuantSpec(time_steps=Ta), QuantSpec(time_steps=Tb), mode=path)(a, b)
        totals[path] = counter.total()
    assert torch.equal(out["snn"], out["snn-fused"]) and torch.equal(out["snn"], out["qat"])
    assert totals["snn"] == totals["snn-fused"]


def test_multiply_counters_by_hand():
    spec = QuantSpec(bits=4, time_steps=3, granularity="tensor")
    op = SNNMultiply(spec, spec, mode="snn-fused")
    for q in (op.qa, op.qb):
        q.observe(torch.tensor([3.0]))
        q.finish_calibration()
    with OpCounter() as counter:
        assert op(torch.tensor([2.0, -3.0]), torch.tensor([1.0, 3.0])).tolist() == [2.0, -9.0]
    # spikes a: 2 + 3, b: 1 + 3; pairs at the same step: min(2,1) + min(3,3)
    stats = counter.total()
    assert stats.spikes == 9 and stats.Effective_ACs == 9 + 4


def test_attention_values_fold_the_value_scale():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(2, 5, 7), -1)
    v = torch.randn(2, 7, 4)
    fused = SpikingAttentionValues(QuantSpec(), mode="snn-fused")(probs, v)
    stepped = SpikingAttentionValues(QuantSpec(time_steps=31), mode="snn")(probs, v)
    assert torch.equal(SpikingAttentionValues(QuantSpec(time_steps=31), mode="snn-fused")(probs, v), stepped)
    assert (fused - probs @ v).abs().max() < 0.05


def test_attention_values_are_causal_per_token():
    """A future token's value must not change past outputs (per-token, not per-channel, V scales)."""
    torch.manual_seed(0)
    op = SpikingAttentionValues(QuantSpec(), mode="snn-fused")
    probs = torch.tril(torch.rand(1, 4, 4))
    probs = probs / probs.sum(-1, keepdim=True)
    v = torch.randn(1, 4, 3)
    louder = v.clone()
    louder[0, 3] *= 100
    assert torch.equal(op(probs, v)[0, :3], op(probs, louder)[0, :3])


def test_masked_softmax_ignores_masked_inputs():
    x = torch.tensor([[1.0, 2.0, 50.0]])
    mask = torch.tensor([[True, True, False]])
    for path in ("snn", "snn-fused", "qat"):
        out = SNNSoftmax(mode=path)(x, mask=mask)
        assert torch.allclose(out, torch.tensor([[1 / (1 + torch.e), torch.e / (1 + torch.e), 0.0]]))


def test_smoothed_scales_tame_outlier_channels_and_stay_exact():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    x[:, 3] *= 200  # an outlier channel
    token = QSynapsis(8, 4, pre=QuantSpec(), post=None)
    smoothed = QSynapsis(8, 4, pre=QuantSpec(granularity="smoothed"), post=None)
    with torch.no_grad():
        smoothed.weight.copy_(token.weight)
        smoothed.bias.copy_(token.bias)
    smoothed.pre.observe(x)
    smoothed.pre.finish_calibration()
    exact = torch.nn.functional.linear(x, token.weight, token.bias)
    with torch.no_grad():
        err_token = (token(x) - exact).abs().mean()
        err_smooth = (smoothed(x) - exact).abs().mean()
    assert err_smooth < err_token / 2
    for path in ("snn", "snn-fused"):
        assert torch.equal(Synapsis.from_qsynapsis(smoothed, path)(x), smoothed(x).detach())


def test_smoothed_quantizer_needs_calibration_and_features():
    with pytest.raises(ValueError, match="num_features is required"):
        Quantizer(QuantSpec(granularity="smoothed"))
    with pytest.raises(ValueError, match="never calibrated"):
        Quantizer(QuantSpec(granularity="smoothed"), num_features=2).scales(torch.ones(1, 2))
    with pytest.raises(ValueError, match="smoothing"):
        QuantSpec(smoothing=2.0)


def test_spike_encoder_paths_agree():
    x = torch.randn(3, 6) * 4
    counts = [SpikeEncoder(QuantSpec(time_steps=20), mode=p)(x)[0] for p in ("snn", "snn-fused", "qat")]
    assert torch.equal(counts[0], counts[1]) and torch.equal(counts[0], counts[2])
