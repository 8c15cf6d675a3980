"""SNNSoftmax: softmax with the differential output of BrainGPT appendix B.3.

    X_t = X_{t-1} + I_t,   Y_t = softmax(X_t) - softmax(X_{t-1})

The accumulated input comes from a spike-coded float input or from the steps of SNNMatmul
(the attention scores); the readout is softmax(X_last) (``differential.py``).
"""

from __future__ import annotations

import torch

from .differential import DifferentialOp
from .quant import QuantSpec


class SNNSoftmax(DifferentialOp):
    """Softmax over ``dim`` with the differential output of B.3. Modes ``qat``, ``snn``, ``snn-fused``."""

    float_ops_per_element = 5  # max, subtract, exp, sum, divide

    def __init__(self, dim: int = -1, input_spec: QuantSpec | None = None, mode: str = "snn-fused") -> None:
        super().__init__(input_spec, mode)
        self.dim = dim

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = x.masked_fill(~mask, torch.finfo(x.dtype).min)
        return torch.softmax(x, dim=self.dim)

    def forward_masked(self, scores: torch.Tensor, record: bool = True) -> torch.Tensor:
        """``forward(x, mask=mask)`` in ``snn-fused`` for scores that hold -inf where the mask is False and were checked
        finite elsewhere (``SNNMatmul.forward_coded`` with a ``mask_bias``): the same output and counts (a masked entry
        contributes exp(-inf - max) = 0 here and exp(lowest - max) = 0 there). ``record`` False: a block of a call
        whose counts the caller records once (``_record_counts`` with a tensor of the whole call's shape)."""
        if self.mode != "snn-fused" or self.input_quant is not None:
            raise ValueError("forward_masked is the snn-fused softmax of pre-masked scores (no input quantizer)")
        out = torch.softmax(scores, dim=self.dim)
        if record:
            self._record_counts(scores, evaluations=1)
        return out
