"""The fast path (models/spiking/fast.py) against the reference neurons it replaces, and its caches."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.spiking import EIIFNeuron, OpCounter, QuantSpec, SNNMultiply, SNNSiLU, StaircaseNeuron, Synapsis
from models.spiking.fast import StaircaseClosedForm, eiif_counts, folded_weight
from models.spiking.gelu import SNNGELU


def test_eiif_counts_follow_in_place_changes_of_r():
    """The memoryless flag is remembered; making the neuron leaky in place must end the closed form."""
    neuron = EIIFNeuron(3)
    x = torch.tensor([[0.7, -2.6, 9.0]])
    assert torch.equal(eiif_counts(neuron, x, 8), neuron.run_constant(x, 8).sum(0))
    with torch.no_grad():
        neuron.r.copy_(torch.tensor([1.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="r >= 1"):
        eiif_counts(neuron, x, 8)


@pytest.mark.parametrize("make", [lambda: SNNSiLU(31, 8.0), lambda: SNNGELU(15, 4.0, "tanh")], ids=["silu", "gelu"])
@given(st.lists(st.floats(-12, 12, width=32), min_size=1, max_size=30), st.sampled_from([torch.float32, torch.float64]))
def test_staircase_closed_form_equals_each_neuron_stepped(make, values, dtype):
    """Per branch: the prefix sum at k equals the neuron's summed spikes, and k its number of spikes."""
    op = make()
    x = torch.tensor(values, dtype=dtype)
    u = x.abs()
    closed = StaircaseClosedForm(op.pos_neuron, op.neg_neuron)
    pos_thr, pos_prefix, neg_thr, neg_prefix = closed.tables(x)
    for neuron, thr, prefix in ((op.pos_neuron, pos_thr, pos_prefix), (op.neg_neuron, neg_thr, neg_prefix)):
        neuron.reset()
        total, fired = torch.zeros_like(u), torch.zeros(u.shape, dtype=torch.int64)
        for spikes in neuron.iter_constant(u, op.time_steps):
            total, fired = total + spikes, fired + (spikes != 0)
        k = torch.searchsorted(thr, u.contiguous(), right=True)
        assert torch.equal(prefix[k], total) and torch.equal(k, fired)
    out, k = closed(x)
    stepped, fired = op.time_stepped(x)
    assert torch.equal(out, stepped)


def test_folded_weight_is_the_product_and_follows_moves():
    spec = QuantSpec(granularity="tensor")
    layer = Synapsis(4, 3, pre=spec, post=None)
    layer.pre.observe(torch.randn(8, 4))
    layer.pre.finish_calibration()
    static = layer.pre.scales(torch.randn(2, 4))[1]
    first = folded_weight(layer, static)
    assert torch.equal(first, layer.weight * static) and folded_weight(layer, static) is first  # kept
    layer.double()
    static = layer.pre.scales(torch.randn(2, 4, dtype=torch.float64))[1]
    moved = folded_weight(layer, static)
    assert moved.dtype == torch.float64 and torch.equal(moved, layer.weight * static)
    assert folded_weight(layer, None) is layer.weight


def test_reference_neuron_checks_its_input_before_the_first_step():
    neuron = EIIFNeuron()
    with pytest.raises(ValueError, match="current contains NaN"):
        neuron.iter_constant(torch.tensor([float("nan")]), 4)  # not only when iterated
    neuron.single_step(torch.ones(3))
    with pytest.raises(ValueError, match="call reset"):
        neuron.single_step(torch.ones(4))


def test_staircase_neuron_is_silent_after_its_last_threshold():
    neuron = StaircaseNeuron(torch.tensor([0.5, 1.0], dtype=torch.float64), torch.tensor([-1.0, 2.0], dtype=torch.float64))
    spikes = neuron.run_constant(torch.tensor([2.0, 0.7, 0.1]), 4)
    assert spikes.tolist() == [[-1.0, -1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_multiply_wide_counts_accumulate_exactly():
    """T_a T_b >= 2^24: the stepped B.1 sum runs in float64 and stays equal to the closed form."""
    torch.manual_seed(0)
    a, b = torch.randn(1, 6), torch.randn(1, 6)
    spec = QuantSpec(bits=14)  # T = 8191
    out, totals = {}, {}
    for mode in ("snn", "snn-fused"):
        with OpCounter() as counter:
            out[mode] = SNNMultiply(spec, spec, mode=mode)(a, b)
        totals[mode] = counter.total()
    assert torch.equal(out["snn"], out["snn-fused"]) and totals["snn"] == totals["snn-fused"]
