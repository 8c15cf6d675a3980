"""EI-IF neuron (BrainGPT eq. 1, 6-10): dynamics, closed form, statistics, bad input."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from models.spiking import EIIFNeuron, spike_count_closed_form
from tests.strategies import value_lists


def exact_count(x: float, T: int) -> int:
    """sign(x) * min(T, floor(|x| + 1/2)) in exact rational arithmetic."""
    q = Fraction(x)
    k = min(T, math.floor(abs(q) + Fraction(1, 2)))
    return -k if q < 0 else k


@given(value_lists(), st.integers(1, 127))
@example([0.49999997, -0.49999997, 0.5, 1.4999999, 2.5, -2.5], 127)
def test_default_neuron_rounds_half_away_and_clamps_to_T(values, T):
    x = torch.tensor(values, dtype=torch.float32)
    spikes = EIIFNeuron().run_constant(x, T)
    assert set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert spikes.sum(0).tolist() == [exact_count(v, T) for v in x.tolist()]
    assert torch.equal(spike_count_closed_form(x, T), spikes.sum(0))  # the general closed form
    assert torch.equal(EIIFNeuron().count_closed_form(x, T), spikes.sum(0))  # its fast path


@given(
    value_lists(min_size=3, max_size=3),
    st.integers(1, 127),
    st.lists(st.floats(0.01, 4.0), min_size=3, max_size=3),
    st.lists(st.one_of(st.just(0.0), st.floats(0.0, 3.0)), min_size=3, max_size=3),
    st.sampled_from([torch.float32, torch.float64]),
)
def test_closed_form_equals_simulation_for_any_memoryless_neuron(values, T, theta_base, alpha, dtype):
    x = torch.tensor(values, dtype=dtype).repeat(4, 1)
    neuron = EIIFNeuron(3, theta_base=torch.tensor(theta_base), alpha=torch.tensor(alpha), r=1.0)
    simulated = neuron.run_constant(x, T).sum(0)
    assert torch.equal(simulated, neuron.count_closed_form(x, T))


@given(
    st.floats(0.01, 4.0),
    st.floats(0.001, 3.0),
    st.integers(1, 127),
    st.sampled_from([torch.float32, torch.float64]),
)
def test_closed_form_is_exact_on_and_beside_every_threshold(theta_base, alpha, T, dtype):
    """Inputs placed exactly on theta(t) as the neuron computes it, and one ulp either side."""
    theta_base, alpha = torch.tensor(theta_base, dtype=dtype), torch.tensor(alpha, dtype=dtype)
    on = theta_base + alpha * torch.arange(T + 1, dtype=dtype)
    x = torch.cat([on, torch.nextafter(on, on + 1), torch.nextafter(on, on - 1)])
    x = torch.cat([x, -x])
    neuron = EIIFNeuron(theta_base=theta_base, alpha=alpha)
    assert torch.equal(neuron.run_constant(x, T).sum(0), neuron.count_closed_form(x, T))


def test_threshold_counts_from_t_zero():
    # t = 0..T-1: theta starts at 0.5, so 0.5 fires once and the float just below it never does.
    below = torch.nextafter(torch.tensor(0.5), torch.tensor(0.0))
    spikes = EIIFNeuron().run_constant(torch.stack([torch.tensor(0.5), below, torch.tensor(1.0)]), 3)
    assert spikes[:, 0].tolist() == [1, 0, 0]
    assert spikes[:, 1].tolist() == [0, 0, 0]
    assert spikes[:, 2].tolist() == [1, 0, 0]


def test_leaky_dynamics_by_hand():
    # r = 0.5: V is halved after each step; theta(t) = 0.5 + t.
    neuron = EIIFNeuron(r=0.5)
    x = torch.tensor([1.2, -1.2])
    spikes = neuron.run_constant(x, 4)
    # V: 1.2 (>=0.5: +1) -> 0.6; 1.8 (>=1.5: +1) -> 0.9; 2.1 (<2.5) -> 1.05; 2.25 (<3.5)
    assert spikes[:, 0].tolist() == [1, 1, 0, 0]
    assert spikes[:, 1].tolist() == [-1, -1, 0, 0]
    assert torch.allclose(neuron.v, torch.tensor([1.125, -1.125]))


def test_attenuation_never_crosses_zero():
    neuron = EIIFNeuron(r=1.7)
    neuron.single_step(torch.tensor([3.0, -3.0]))
    assert neuron.v.tolist() == [0.0, 0.0]


def test_statistics_and_explicit_reset():
    neuron = EIIFNeuron(track_stats=True, r=0.5)
    x = torch.tensor([0.3, 2.6, -0.9, 0.0])
    spikes = neuron.run_constant(x, 5)
    assert torch.equal(neuron.spike_count, spikes.sum(0))
    assert torch.equal(neuron.num_spikes, (spikes != 0).sum(0))
    # 0.3: V = 0.3, 0.45, 0.525 ... never reaches theta; 2.6 fires at t=0; -0.9 fires at t=0.
    assert neuron.first_spike_time.tolist() == [-1, 0, 0, -1]
    neuron.reset()
    assert neuron.v is None and neuron.t == 0 and neuron.spike_count is None
    assert torch.equal(neuron.run_constant(x, 5), spikes)


def test_multi_step_equals_repeated_single_step():
    torch.manual_seed(0)
    currents = torch.randn(6, 2, 5) * 3
    a, b = EIIFNeuron(5, r=0.25), EIIFNeuron(5, r=0.25)
    stepped = torch.stack([a.single_step(c) for c in currents])
    assert torch.equal(b.multi_step(currents), stepped)


def test_closed_form_first_spike_time_matches_simulation():
    x = torch.tensor([0.2, 0.7, -4.0, 0.0])
    neuron = EIIFNeuron(track_stats=True)
    neuron.run_constant(x, 8)
    count = EIIFNeuron().count_closed_form(x, 8)
    assert torch.equal(EIIFNeuron.first_spike_time_closed_form(count), neuron.first_spike_time)


def test_closed_form_refuses_leaky_neurons():
    with pytest.raises(ValueError, match="r >= 1"):
        EIIFNeuron(r=0.5).count_closed_form(torch.ones(2), 4)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"theta_base": 0.0}, "theta_base"), ({"alpha": -1.0}, "alpha"), ({"r": -0.1}, "r"), ({"theta_base": float("nan")}, "theta_base")],
)
def test_bad_parameters_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        EIIFNeuron(**kwargs)


def test_bad_inputs_name_the_argument():
    neuron = EIIFNeuron(3)
    with pytest.raises(ValueError, match="current"):
        neuron.single_step(torch.tensor([1.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="current.*last dimension 3"):
        neuron.single_step(torch.ones(4))
    with pytest.raises(ValueError, match="time_steps"):
        neuron.run_constant(torch.ones(3), 0)
    with pytest.raises(ValueError, match="time_steps"):
        spike_count_closed_form(torch.ones(3), -2)
    with pytest.raises(ValueError, match="x contains inf"):
        neuron.count_closed_form(torch.tensor([1.0, float("inf"), 0.0]), 4)


def test_closed_form_follows_in_place_threshold_changes():
    """conversion_parameters is remembered between calls; an in-place change (as stage 3 makes) must end it."""
    neuron = EIIFNeuron(4)
    x = torch.tensor([[0.7, 2.6, -3.4, 9.0]])
    assert neuron.conversion_parameters
    assert torch.equal(neuron.count_closed_form(x, 8), neuron.run_constant(x, 8).sum(0))
    with torch.no_grad():
        neuron.alpha.copy_(torch.tensor([2.0, 1.0, 3.0, 1.5]))
        neuron.theta_base.copy_(torch.tensor([1.0, 0.5, 0.7, 1.2]))
    assert not neuron.conversion_parameters
    neuron.reset()
    assert torch.equal(neuron.count_closed_form(x, 8), neuron.run_constant(x, 8).sum(0))
