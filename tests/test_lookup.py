"""BucketLookup: the staircase neurons' closed form by bucket table equals the binary search, bit for bit."""

import pytest
import torch

from models.spiking import SNNSiLU
from models.spiking.gelu import SNNGELU
from models.spiking.lookup import BucketLookup


def _hard_inputs(op, dtype: torch.dtype) -> torch.Tensor:
    """Every threshold on both sides, their float neighbours, zeros of both signs, far outside the fit, random."""
    fit = op.fit
    points = torch.cat([fit.pos_thresholds, -fit.neg_thresholds, torch.tensor([0.0, -0.0, 1e30, -1e30, 1e-40, -1e-40], dtype=torch.float64)]).to(dtype)
    up = torch.nextafter(points, torch.full_like(points, float("inf")))
    down = torch.nextafter(points, torch.full_like(points, float("-inf")))
    noise = torch.randn(20_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype) * 4
    return torch.cat([points, up, down, noise])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("make", [lambda T: SNNSiLU(T, 8.0), lambda T: SNNGELU(T, 8.0)], ids=["silu", "gelu"])
@pytest.mark.parametrize("T", [1, 2, 15, 127, 255])
def test_lookup_equals_binary_search(make, T, dtype):
    op = make(T)
    x = _hard_inputs(op, dtype)
    assert op._lookup(x) is not None, "the tables should separate every breakpoint"
    out, k = op._closed_form(x)
    ref_out, ref_k = op._closed_form_search(x)
    assert torch.equal(out, ref_out) and torch.equal(out.signbit(), ref_out.signbit())
    assert torch.equal(k, ref_k)


def test_lookup_on_a_plain_step_function():
    breakpoints = torch.tensor([-1.0, 0.0, 0.5, 0.5001])

    def steps(x):
        return (torch.searchsorted(breakpoints, x.contiguous(), right=True).to(x.dtype),)

    lookup = BucketLookup.build(steps, breakpoints)
    x = torch.cat([breakpoints, torch.nextafter(breakpoints, torch.full_like(breakpoints, 9.0)),
                   torch.nextafter(breakpoints, torch.full_like(breakpoints, -9.0)), torch.linspace(-3, 3, 1001)])
    assert torch.equal(lookup(x)[0], steps(x)[0])


def test_lookup_refuses_what_it_cannot_separate():
    points = torch.tensor([0.0, 1e-30, 1.0])  # 1e-30 apart within a span of 1: more buckets than allowed
    assert BucketLookup.build(lambda x: (x,), points, max_buckets=1 << 10) is None
