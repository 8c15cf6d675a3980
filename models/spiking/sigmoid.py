"""The spiking sigmoid of BrainGPT appendix B.2.1.

The paper's sigmoid neuron is a leaky V_t = lambda V_{t-1} + I_t with output sigma(V_t); with
lambda = 1 and the differential readout of ``differential.py`` (Y_t = sigma(X_t) - sigma(X_{t-1}))
its outputs sum to sigma(x) exactly, which is the form used here.
"""

from __future__ import annotations

import torch

from .differential import DifferentialOp


class SpikingSigmoid(DifferentialOp):
    """Sigmoid neuron of B.2.1 (lambda = 1) with the differential readout. Modes ``qat``, ``snn``, ``snn-fused``."""

    float_ops_per_element = 4  # negate, exp, add, divide

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(x)
