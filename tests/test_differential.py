"""SNNSoftmax, spiking sigmoid, SNNRMSNorm: differential outputs, snn == fused, streaming."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.spiking import OpCounter, QuantSpec, SNNMatmul, SNNRMSNorm, SNNSoftmax, SpikingSigmoid


def _make(kind, path, spec):
    if kind == "softmax":
        return SNNSoftmax(dim=-1, input_spec=spec, mode=path)
    if kind == "sigmoid":
        return SpikingSigmoid(input_spec=spec, mode=path)
    op = SNNRMSNorm(6, input_spec=spec, mode=path)
    with torch.no_grad():
        op.weight.copy_(torch.linspace(0.5, 2.0, 6))
    return op


@given(st.sampled_from(["softmax", "sigmoid", "rmsnorm"]), st.integers(0, 2**16), st.integers(1, 127))
def test_snn_equals_fused_bit_for_bit(kind, seed, T):
    torch.manual_seed(seed)
    x = torch.randn(3, 6) * 4
    spec = QuantSpec(time_steps=T)
    outs, totals = {}, {}
    for path in ("snn", "snn-fused"):
        with OpCounter() as counter:
            outs[path] = _make(kind, path, spec)(x)
        totals[path] = counter.total()
    assert torch.equal(outs["snn"], outs["snn-fused"])
    assert totals["snn"] == totals["snn-fused"]


def test_differential_outputs_sum_to_the_function_of_the_input():
    torch.manual_seed(0)
    x = torch.randn(2, 5) * 3
    op = SNNSoftmax(input_spec=QuantSpec(time_steps=20), mode="snn")
    received = []
    out = op(x, on_step=lambda t, y: received.append(y))
    assert len(received) == 20
    assert torch.allclose(torch.stack(received).sum(0), out, atol=1e-6)
    assert torch.allclose(out.sum(-1), torch.ones(2))
    assert (out - torch.softmax(x, -1)).abs().max() < 0.02


def test_softmax_streams_the_matmul_steps():
    torch.manual_seed(0)
    q, k = torch.randn(4, 8), torch.randn(8, 4)
    spec = QuantSpec(time_steps=15)
    scores = SNNMatmul(spec, spec, mode="snn-fused")(q, k)
    streamed = SNNSoftmax(mode="snn").integrate(SNNMatmul(spec, spec, mode="snn").iter_steps(q, k))
    assert torch.equal(streamed, torch.softmax(scores, -1))


def test_rmsnorm_matches_the_llama_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 6)
    op = SNNRMSNorm(6, eps=1e-5, mode="snn-fused")
    expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    assert torch.allclose(op(x), expected, atol=1e-6)


def test_without_input_quantizer_the_function_is_exact():
    x = torch.randn(3, 4)
    for path in ("snn", "snn-fused", "qat"):
        assert torch.equal(SpikingSigmoid(mode=path)(x), torch.sigmoid(x))


def test_bad_inputs():
    with pytest.raises(ValueError, match="last dimension 6"):
        SNNRMSNorm(6)(torch.ones(2, 5))
    with pytest.raises(ValueError, match="eps"):
        SNNRMSNorm(6, eps=0.0)
    with pytest.raises(ValueError, match="at least one time step"):
        SNNSoftmax(mode="snn").integrate([])
    with pytest.raises(ValueError, match="x contains NaN"):
        SNNSoftmax()(torch.tensor([float("nan")]))
