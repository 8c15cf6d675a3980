"""SwiGLU's spiking middle in one pass: a staircase activation (SNNSiLU, BrainGPT B.2.2) feeding SNNMultiply (B.1).

``staircase_product(act, multiply, gate, up)`` is ``multiply(act(gate), up)`` in ``snn-fused``, fused into one
kernel (``kernels.staircase_product``): the same output and the same counts of both operators, bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

import models.spiking.counters as counters
import models.spiking.kernels as kernels
import models.spiking.observe as observe

from .encode import steps_tensor
from .fast import counts_are_quantized
from .products import SNNMultiply


def staircase_product(act: nn.Module, multiply: nn.Module, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor | None:
    """``multiply(act(gate), up)`` for a ``snn-fused`` staircase activation (SNNSiLU, B.2.2) and SNNMultiply (B.1) in one
    fused pass (``kernels.staircase_product``): the same output and the same counts of both operators, bit for bit.
    None where it does not apply (another mode or coding, observing, no bucket table, a static scale, a non-finite
    input, products beyond float32's exact range, a float multiply): the caller then runs the two operators."""
    if not isinstance(multiply, SNNMultiply) or getattr(act, "mode", None) != "snn-fused" or multiply.mode != "snn-fused":
        return None
    if observe.observing() or multiply.coding != "rate":
        return None
    if gate.shape != up.shape or gate.dim() == 0 or gate.numel() == 0 or not gate.is_floating_point() or up.dtype != gate.dtype:
        return None
    lookup = act.closed_form.lookup(gate) if hasattr(act, "closed_form") else None
    qa, qb = multiply.qa, multiply.qb
    if lookup is None or qa.spec.granularity != "token" or qb.spec.granularity != "token" or multiply._accumulator(gate, up) != gate.dtype:
        return None
    if not (counts_are_quantized(multiply.a_neuron, gate.dtype, qa.T) and counts_are_quantized(multiply.b_neuron, gate.dtype, qb.T)):
        return None
    counting = counters.counting()
    tables = (lookup.left[1], lookup.right[1]) if counting else (None, None)
    with torch.no_grad():
        out, check, staircase_spikes, tallies = kernels.backend(gate.device).chains["staircase_product"](
            gate.detach(), up.detach(), lookup.low, lookup.inv_width, lookup.buckets, lookup.bp, lookup.left[0], lookup.right[0], *tables,
            qa.clip_value().detach().to(gate.dtype), qb.clip_value().detach().to(gate.dtype),
            steps_tensor(qa.T, gate.dtype, gate.device), steps_tensor(qb.T, gate.dtype, gate.device), qa.T, qb.T,
        )
    if not bool(torch.isfinite(check).all()):
        return None
    if counting:
        act._record_counts(gate, int(staircase_spikes.sum()))
        spikes_a, spikes_b, pairs = (int(t) for t in tallies)
        multiply._record_counts(gate, up, spikes_a + spikes_b, spikes_a + spikes_b + pairs)
    return out
