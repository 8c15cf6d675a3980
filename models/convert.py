"""Stage 2: ANN -> QAT -> SNN conversion, as an operator swap plus calibration (DESIGN.md).

1. ``collect_stats``: run the float model on a few batches of training text.
2. ``to_qat``: rebuild the same architecture with quantized operators (QSynapsis ...), the same
   weights, per-layer SNNSiLU ranges and calibrated scales.
3. ``swap_mode``: replace every quantized operator by its spiking twin (Synapsis ...), keeping
   weights and scales: with the quantizer rounding half away from zero and clamping to [-T, T]
   this is lossless, so the SNN computes what the QAT model computes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch

from .arch.llama import LlamaForCausalLM
from .arch.spiking_config import SpikingConfig
from .calibrate import ActivationStats, apply_stats, collect_stats
from .load import SPIKING_STATE, LoadedModel


def swap_mode(model: LlamaForCausalLM, spiking: SpikingConfig) -> LlamaForCausalLM:
    """The same model with operators for ``spiking`` (e.g. QAT -> snn-fused), weights and scales kept."""
    swapped = type(model)(model.config, spiking, init_weights=False)
    state = model.state_dict()
    missing, unexpected = swapped.load_state_dict(state, strict=False)
    bad_missing = [k for k in missing if not k.endswith(SPIKING_STATE)]
    unexpected = [k for k in unexpected if not k.endswith(SPIKING_STATE)]  # e.g. neuron buffers going back to qat
    if bad_missing or unexpected:
        raise ValueError(f"operator swap lost state: missing {bad_missing[:3]}, unexpected {unexpected[:3]}")
    return swapped.to(next(model.parameters()).device).eval()


@dataclass
class Conversion:
    qat: LlamaForCausalLM
    snn: LlamaForCausalLM
    stats: ActivationStats


def to_qat(ann: LlamaForCausalLM, stats: ActivationStats, spiking: SpikingConfig) -> LlamaForCausalLM:
    """The QAT model: quantized operators, the float model's weights, calibrated scales and SiLU ranges."""
    spiking = spiking.with_mode("qat", silu_x_max_per_layer=stats.silu_ranges())
    qat = type(ann)(ann.config, spiking, init_weights=False).to(next(ann.parameters()).device)
    missing, unexpected = qat.load_state_dict(ann.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"the float model has weights the QAT model lacks: {unexpected[:3]}")
    apply_stats(qat, stats)
    return qat.eval()


def convert(
    ann: LlamaForCausalLM,
    calibration: Iterable[torch.Tensor],
    spiking: SpikingConfig,
    mode: str = "snn-fused",
) -> Conversion:
    """Calibrate on ``calibration`` batches of token ids, build the QAT model, swap in spiking operators."""
    if mode not in ("snn", "snn-fused"):
        raise ValueError(f"mode must be snn or snn-fused, got {mode!r}")
    stats = collect_stats(ann, calibration)
    qat = to_qat(ann, stats, spiking)
    snn = swap_mode(qat, qat.spiking.with_mode(mode))
    return Conversion(qat, snn, stats)


def in_mode(loaded: LoadedModel, mode: str | None, spiking: SpikingConfig, calibration: Iterable[torch.Tensor]) -> LoadedModel:
    """``loaded`` ready to run in ``mode`` (None: its own): as it is when it is in that mode already; a converted
    model swapped to another of its spiking modes (qat, snn, snn-fused); a float model calibrated on ``calibration``
    batches of token ids and converted (stage 2) with the bits, T and granularity of ``spiking`` (its mode is not used).
    ``calibration`` is only iterated for a conversion (a generator costs nothing otherwise)."""
    model = loaded.model
    if mode is None or mode == model.mode:
        return loaded
    if model.mode != "ann":
        if {mode, model.mode} <= {"qat", "snn", "snn-fused"}:
            return replace(loaded, model=swap_mode(model, model.spiking.with_mode(mode)))
        raise ValueError(f"model {loaded.name!r} is in mode {model.mode!r}; it cannot run as {mode!r}")
    conversion = convert(model, calibration, spiking)
    if mode == "qat":
        return replace(loaded, model=conversion.qat)
    snn = conversion.snn if mode == "snn-fused" else swap_mode(conversion.snn, conversion.snn.spiking.with_mode(mode))
    return replace(loaded, model=snn)
