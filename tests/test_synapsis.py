"""QSynapsis == Synapsis (lossless conversion), snn == snn-fused, counters by hand."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.spiking import OpCounter, QSynapsis, QuantSpec, Synapsis
from tests.strategies import bits_and_steps, value_lists


def _calibrate_unit_scale(q: QSynapsis, scale: float) -> None:
    for quantizer in (q.pre, q.post):
        if quantizer is not None and not quantizer.spec.dynamic:
            with torch.no_grad():
                quantizer.scale.fill_(scale)
            quantizer.calibrated.fill_(True)


def _layer(in_f, out_f, spec, post, seed):
    torch.manual_seed(seed)
    q = QSynapsis(in_f, out_f, bias=True, pre=spec, post=spec if post else None)
    return q


@given(
    value_lists(min_size=4, max_size=4),
    bits_and_steps(),
    st.sampled_from(["token", "tensor"]),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_qsynapsis_equals_synapsis_on_both_paths(values, bits_T, granularity, post, seed):
    bits, T = bits_T
    spec = QuantSpec(bits=bits, time_steps=T, granularity=granularity)
    q = _layer(4, 3, spec, post, seed)
    # A power-of-two static scale keeps exact ties (k + 0.5) exact after x / s.
    _calibrate_unit_scale(q, 0.25)
    x = torch.tensor(values).reshape(1, 4) * 0.25
    x = torch.cat([x, x.flip(-1)])
    with torch.no_grad():
        expected = q(x)
    for path in ("snn-fused", "snn"):
        got = Synapsis.from_qsynapsis(q, path)(x)
        assert torch.equal(got, expected), path


@given(st.integers(0, 2**16), bits_and_steps(max_steps=32))
def test_snn_and_fused_agree_on_random_layers_and_counters(seed, bits_T):
    bits, T = bits_T
    torch.manual_seed(seed)
    spec = QuantSpec(bits=bits, time_steps=T)
    x = torch.randn(2, 3, 8) * 5
    fused = Synapsis(8, 5, pre=spec, post=spec, mode="snn-fused")
    stepped = Synapsis(8, 5, pre=spec, post=spec, mode="snn")
    stepped.load_state_dict(fused.state_dict())
    with OpCounter() as c_fused:
        a = fused(x)
    with OpCounter() as c_stepped:
        b = stepped(x)
    assert torch.equal(a, b)
    assert c_fused.total() == c_stepped.total()


def test_values_beyond_T_times_scale_are_clipped_identically():
    q = QSynapsis(2, 1, bias=False, pre=QuantSpec(bits=4, granularity="tensor"), post=None)
    _calibrate_unit_scale(q, 1.0)
    with torch.no_grad():
        q.weight.fill_(1.0)
    x = torch.tensor([[100.0, -3.4]])
    with torch.no_grad():
        assert q(x).item() == 7.0 - 3.0
    assert Synapsis.from_qsynapsis(q, "snn")(x).item() == 4.0


def test_counters_by_hand():
    """3 -> 2 layer, T = 4, static scale 1: pre counts [0, 2, -3] -> 5 spikes x fan-out 2."""
    q = QSynapsis(3, 2, bias=False, pre=QuantSpec(bits=4, time_steps=4, granularity="tensor"),
                  post=QuantSpec(bits=4, time_steps=4, granularity="tensor"))
    _calibrate_unit_scale(q, 1.0)
    with torch.no_grad():
        q.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.0, -0.5]]))
    x = torch.tensor([[0.4, 1.6, -2.5]])
    for path in ("snn", "snn-fused"):
        s = Synapsis.from_qsynapsis(q, path)
        with OpCounter(s) as counter:
            y = s(x)
        # current = W . [0, 2, -3] = [2, 1.5] -> post counts [2, 2] (1.5 rounds half away)
        assert y.tolist() == [[2.0, 2.0]]
        stats = counter.totals["Synapsis"]
        assert stats.calls == 1
        assert stats.spikes == 5 + 4
        assert stats.Effective_ACs == 5 * 2
        assert stats.Dense == 4 * 3 * 2
        assert stats.neuron_steps == 4 * 3 + 4 * 2
        assert stats.activation_sparsity == pytest.approx(1 - 9 / 20)
    with OpCounter(q) as counter:
        with torch.no_grad():
            q(x)
    assert counter.totals["QSynapsis"].Effective_MACs == 2 * 2  # two nonzero quantized inputs x fan-out 2


def test_batch_independence():
    torch.manual_seed(1)
    s = Synapsis(6, 4, mode="snn-fused")
    seq = torch.randn(1, 5, 6)
    batch = torch.cat([seq, 50 * torch.randn(2, 5, 6)])
    assert torch.equal(s(seq)[0], s(batch)[0])


def test_qat_gradients_flow():
    q = QSynapsis(4, 3)
    x = torch.randn(2, 4, requires_grad=True)
    q(x).pow(2).sum().backward()
    assert x.grad.abs().sum() > 0 and q.weight.grad.abs().sum() > 0


def test_bad_inputs():
    s = Synapsis(4, 2)
    with pytest.raises(ValueError, match="x must have last dimension 4"):
        s(torch.ones(3, 5))
    with pytest.raises(ValueError, match="x contains NaN"):
        s(torch.tensor([[1.0, 2.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="path"):
        Synapsis(4, 2, mode="fused")
    with pytest.raises(ValueError, match="in_features"):
        Synapsis(0, 2)


@pytest.mark.parametrize("granularity", ["tensor", "channel", "smoothed"])
def test_folded_weight_follows_changes_to_weight_and_scale(granularity):
    spec = QuantSpec(bits=8, granularity=granularity)
    q = _layer(6, 5, spec, True, 3)
    for quantizer in (q.pre, q.post):
        quantizer.observe(torch.randn(16, quantizer.num_features))
        quantizer.finish_calibration()
    s = Synapsis.from_qsynapsis(q, "snn-fused")
    x = torch.randn(4, 6)
    with torch.no_grad():
        assert torch.equal(s(x), q(x))
        for change in (lambda m: m.weight.mul_(1.5), lambda m: (m.pre.factor if granularity == "smoothed" else m.pre.scale).mul_(0.5)):
            change(q)
            change(s)
            assert torch.equal(s(x), q(x)), "a cached W * s_static outlived an in-place change"
