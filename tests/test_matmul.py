"""SNNMatmul (appendix B.1): exact integer accumulation, snn == fused == qat, counters by hand."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.spiking import OpCounter, QuantSpec, SNNMatmul, quantize_counts
from models.spiking.quant import token_scale


@given(st.integers(0, 2**16), st.integers(1, 40), st.integers(1, 40), st.integers(1, 6), st.integers(1, 6), st.integers(1, 6))
def test_snn_fused_and_qat_agree_bit_for_bit(seed, Ta, Tb, M, K, N):
    torch.manual_seed(seed)
    a, b = torch.randn(2, M, K) * 3, torch.randn(2, K, N)
    spec_a, spec_b = QuantSpec(time_steps=Ta), QuantSpec(time_steps=Tb)
    results, totals = {}, {}
    for path in ("snn", "snn-fused", "qat"):
        with OpCounter() as counter:
            results[path] = SNNMatmul(spec_a, spec_b, mode=path)(a, b)
        totals[path] = counter.total()
    assert torch.equal(results["snn"], results["snn-fused"])
    assert torch.equal(results["snn"], results["qat"])
    assert totals["snn"] == totals["snn-fused"]


def test_result_is_the_product_of_the_quantized_operands():
    torch.manual_seed(0)
    a, b = torch.randn(3, 8), torch.randn(8, 5)
    sa, sb = token_scale(a, 127), token_scale(b, 127, dim=-2)
    expected = (quantize_counts(a / sa, 127) * sa) @ (quantize_counts(b / sb, 127) * sb)
    got = SNNMatmul(mode="snn")(a, b)
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got - a @ b).abs().max() < 0.1


def test_each_step_is_the_product_of_the_spike_prefixes():
    """A_t = S_a,t . S_b,t: the accumulated B.1 increments after every step."""
    a = torch.tensor([[2.0, -1.0]])
    b = torch.tensor([[3.0], [1.0]])
    spec = QuantSpec(bits=4, time_steps=3, granularity="tensor")
    op = SNNMatmul(spec, spec, mode="snn")
    for q in (op.qa, op.qb):
        q.observe(torch.tensor([3.0]))
        q.finish_calibration()  # scale 1
    steps = [s.item() for s in op.iter_steps(a, b)]
    # counts: a = [2, -1] spikes a_t: t0 [1,-1], t1 [1,0]; b = [3, 1]: t0 [1,1], t1 [1,0], t2 [1,0]
    # prefixes: t0 a=[1,-1] b=[1,1] -> 0; t1 a=[2,-1] b=[2,1] -> 3; t2 a=[2,-1] b=[3,1] -> 5
    assert steps == [0.0, 3.0, 5.0]


def test_counters_by_hand():
    a = torch.tensor([[2.0, -1.0]])  # M=1, K=2
    b = torch.tensor([[3.0], [1.0]])  # N=1
    spec = QuantSpec(bits=4, time_steps=3, granularity="tensor")
    for path in ("snn", "snn-fused"):
        op = SNNMatmul(spec, spec, mode=path)
        for q in (op.qa, op.qb):
            q.observe(torch.tensor([3.0]))
            q.finish_calibration()
        with OpCounter() as counter:
            op(a, b)
        stats = counter.total()
        # a spikes: 3, b spikes: 4 -> fan-outs N=1 and M=1: 3 + 4; same-step pairs per k:
        # k=0: a fires t0,t1; b fires t0,t1,t2 -> 2 pairs; k=1: a fires t0, b fires t0 -> 1 pair
        assert stats.spikes == 7
        assert stats.Effective_ACs == 3 + 4 + 3
        assert stats.Dense == 3 * 3 * 1 * 1 * 2
        assert stats.neuron_steps == 3 * 2 + 3 * 2


def test_wide_counts_accumulate_exactly_in_float64():
    torch.manual_seed(0)
    a, b = torch.randn(4, 300), torch.randn(300, 3)
    spec = QuantSpec(bits=16)  # T = 32767: |A| can reach 32767^2 * 300 > 2^24
    op = SNNMatmul(spec, spec, mode="snn-fused")
    sa, sb = token_scale(a, 32767), token_scale(b, 32767, dim=-2)
    na = quantize_counts(a / sa, 32767).to(torch.int64)
    nb = quantize_counts(b / sb, 32767).to(torch.int64)
    exact = (na @ nb).to(torch.float32) * (sa * sb)
    assert torch.equal(op(a, b), exact)


def test_bad_shapes():
    op = SNNMatmul()
    with pytest.raises(ValueError, match="must share K"):
        op(torch.ones(2, 3), torch.ones(4, 2))
    with pytest.raises(ValueError, match="at least 2-D"):
        op(torch.ones(3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="batch dimensions"):
        op(torch.ones(2, 2, 3), torch.ones(3, 3, 2))
    with pytest.raises(ValueError, match="b contains inf"):
        op(torch.ones(2, 3), torch.full((3, 2), float("inf")))
