"""SNNSiLU (appendix B.2.2): fitted neurons, error on [-8, 8], snn == fused, QAT gradient."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from models.spiking import OpCounter, SNNSiLU, fit_snn_silu


def test_fit_error_on_minus_8_to_8():
    fit = fit_snn_silu(127, 8.0)
    # L-infinity optimum of a 127-step staircase over SiLU's rise 0 -> SiLU(8): half a step.
    half_step = F.silu(torch.tensor(8.0, dtype=torch.float64)).item() / (127 - 0.5) / 2
    assert fit.max_abs_error <= half_step * 1.001
    assert fit.mean_abs_error < 0.01
    assert torch.all(fit.pos_thresholds[1:] >= fit.pos_thresholds[:-1])
    assert torch.all(fit.neg_thresholds[1:] >= fit.neg_thresholds[:-1])
    assert set(fit.neg_amplitudes.sign().tolist()) == {-1.0, 1.0}


def test_error_shrinks_with_time_steps():
    errors = [fit_snn_silu(T, 8.0).max_abs_error for T in (15, 31, 63, 127)]
    assert errors == sorted(errors, reverse=True)


def test_dense_grid_matches_reported_error():
    op = SNNSiLU(63, 8.0, mode="snn-fused")
    x = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    err = (op(x) - F.silu(x)).abs()
    assert err.max().item() == pytest.approx(op.fit.max_abs_error, rel=0.05)


def _thresholds_and_neighbours():
    fit = fit_snn_silu(31, 8.0)
    points = torch.cat([fit.pos_thresholds, -fit.neg_thresholds]).float()
    up = torch.nextafter(points, torch.full_like(points, np.inf))
    down = torch.nextafter(points, torch.full_like(points, -np.inf))
    return torch.cat([points, up, down]).tolist()


@given(
    st.lists(
        st.one_of(st.floats(-12, 12, width=32), st.sampled_from(_thresholds_and_neighbours())),
        min_size=1,
        max_size=40,
    )
)
def test_snn_equals_fused_bit_for_bit_even_on_thresholds(values):
    x = torch.tensor(values)
    with OpCounter() as c_fused:
        fused = SNNSiLU(31, 8.0, mode="snn-fused")(x)
    with OpCounter() as c_stepped:
        stepped = SNNSiLU(31, 8.0, mode="snn")(x)
    assert torch.equal(fused, stepped)
    assert c_fused.total() == c_stepped.total()


def test_qat_forward_is_the_staircase_and_backward_is_silu_prime():
    x = torch.linspace(-6, 6, 101, requires_grad=True)
    op = SNNSiLU(63, 8.0, mode="qat")
    y = op(x)
    assert torch.equal(y.detach(), SNNSiLU(63, 8.0, mode="snn-fused")(x.detach()))
    y.sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    F.silu(x2).sum().backward()
    assert torch.allclose(x.grad, x2.grad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="time_steps"):
        SNNSiLU(0)
    with pytest.raises(ValueError, match="x_max"):
        SNNSiLU(31, -1.0)
    with pytest.raises(ValueError, match="x contains inf"):
        SNNSiLU(31)(torch.tensor([float("inf")]))
