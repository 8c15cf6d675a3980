"""Stage 2: ANN -> QAT -> SNN conversion, as an operator swap plus calibration (DESIGN.md), for every architecture.

1. ``collect_stats``: run the float model on a few batches of training text.
2. ``to_qat``: rebuild the same architecture (or a variant of it: GPT-2 with spike-based
   self-attention, NeurTransformer's step 1) with quantized operators, the same weights,
   per-layer staircase ranges and calibrated scales; operators with calibrated state (SSA) are
   fitted to their float twins (``calibrate_to_float``).
3. ``swap_mode``: replace every quantized operator by its spiking twin (Synapsis ...), keeping
   weights and scales: with the quantizer rounding half away from zero and clamping to [-T, T]
   this is lossless, so the SNN computes what the QAT model computes. Its EI-IF neurons emit the
   counts in the spike coding of its SpikingConfig (``with_coding``; rate, bitwise or multilevel:
   the same counts, so the same outputs), which a saved model records and reloads with.

Which state keys a swap may gain or lose comes from the operators' classes (``mode_state_keys``,
``calibrated_keys``), never from key names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from .arch.base import CausalLM, calibrated_keys, mode_state_keys
from .arch.spiking_config import SpikingConfig
from .calibrate import ActivationStats, apply_stats, calibrate_to_float, collect_stats
from .load import LoadedModel
from .spiking.checks import SPIKING_MODES, check_coding
from .spiking.neuron import set_coding


def swap_mode(model: CausalLM, spiking: SpikingConfig) -> CausalLM:
    """The same model with operators for ``spiking`` (e.g. QAT -> snn-fused), weights and scales kept."""
    swapped = type(model)(model.config, spiking, init_weights=False)
    missing, unexpected = swapped.load_state_dict(model.state_dict(), strict=False)
    bad_missing = sorted(set(missing) - mode_state_keys(swapped))
    unexpected = sorted(set(unexpected) - mode_state_keys(model))  # e.g. neuron buffers going back to qat
    if bad_missing or unexpected:
        raise ValueError(f"operator swap lost state: missing {bad_missing[:3]}, unexpected {unexpected[:3]}")
    if spiking.coding != "rate":
        set_coding(swapped, spiking.coding)  # checked again on the thresholds just loaded (stage 3 tunes them)
    return swapped.to(next(model.parameters()).device).eval()


def with_coding(model: CausalLM, coding: str) -> CausalLM:
    """``model`` (changed in place) with every EI-IF neuron in spike ``coding``, recorded in its SpikingConfig (so a
    saved model reloads with it); a one-line ValueError for a non-rate coding of a model after stage 3."""
    set_coding(model, coding)
    if model.spiking.coding != coding:
        model.spiking = model.spiking.with_mode(model.mode, coding=coding)
    return model


@dataclass
class Conversion:
    qat: CausalLM
    snn: CausalLM
    stats: ActivationStats


def to_qat(ann: CausalLM, stats: ActivationStats, spiking: SpikingConfig, config: Any = None) -> CausalLM:
    """The QAT model: quantized operators, the float model's weights, calibrated scales and staircase ranges.
    ``config``: the converted model's architecture config when it differs from the float model's (e.g. SSA in);
    its calibrated state (``calibrated_keys``) is then still to be fitted (``calibrate_to_float``)."""
    qat = type(ann)(config or ann.config, spiking.with_ranges("qat", stats.ranges()), init_weights=False).to(next(ann.parameters()).device)
    missing, unexpected = qat.load_state_dict(ann.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"the float model has weights the QAT model lacks: {unexpected[:3]}")
    lacking = sorted(set(missing) - mode_state_keys(qat) - calibrated_keys(qat))
    if lacking:
        raise ValueError(f"the QAT model has weights the float model lacks: {lacking[:3]}")
    apply_stats(qat, stats)
    return qat.eval()


def convert(
    ann: CausalLM,
    calibration: Iterable[torch.Tensor],
    spiking: SpikingConfig,
    mode: str = "snn-fused",
    config: Any = None,
    quantile: float = 0.999,
    coding: str | None = None,
    progress: bool = False,
) -> Conversion:
    """Calibrate on ``calibration`` batches of token ids, build the QAT model (of ``config``, default the float
    model's), fit its calibrated operators to their float twins (the ``quantile`` of their activations), swap in
    spiking operators whose neurons emit spikes in ``coding`` (rate, bitwise, multilevel; None: ``spiking.coding``,
    rate by default). ``progress``: a tqdm bar over the calibration batches (on stderr)."""
    if mode not in SPIKING_MODES:
        raise ValueError(f"mode must be snn or snn-fused, got {mode!r}")
    coding = check_coding(spiking.coding if coding is None else coding)
    batches = list(calibration)
    stats = collect_stats(ann, tqdm(batches, desc="calibrating", unit="batch", disable=not progress))
    qat = to_qat(ann, stats, spiking, config)
    calibrate_to_float(qat, ann, batches, quantile)
    snn = swap_mode(qat, qat.spiking.with_mode(mode, coding=coding))
    return Conversion(qat, snn, stats)


def in_mode(loaded: LoadedModel, mode: str | None, spiking: SpikingConfig, calibration: Iterable[torch.Tensor],
            progress: bool = False) -> LoadedModel:
    """``loaded`` ready to run in ``mode`` (None: its own): as it is when it is in that mode already; a converted
    model swapped to another of its spiking modes (qat, snn, snn-fused); a float model calibrated on ``calibration``
    batches of token ids and converted (stage 2) with the bits, T and granularity of ``spiking`` (its mode is not used).
    A spiking ``mode`` runs in the spike coding of ``spiking`` (``with_coding``; None keeps the model's own).
    ``calibration`` is only iterated for a conversion (a generator costs nothing otherwise); ``progress`` shows it."""
    model = loaded.model
    if mode is None:
        return loaded
    if mode == model.mode:
        ready = loaded
    elif model.mode != "ann":
        if {mode, model.mode} <= {"qat", "snn", "snn-fused"}:
            ready = replace(loaded, model=swap_mode(model, model.spiking.with_mode(mode)))
        else:
            raise ValueError(f"model {loaded.name!r} is in mode {model.mode!r}; it cannot run as {mode!r}")
    else:
        conversion = convert(model, calibration, spiking, progress=progress)
        if mode == "qat":
            return replace(loaded, model=conversion.qat)
        snn = conversion.snn if mode == "snn-fused" else swap_mode(conversion.snn, conversion.snn.spiking.with_mode(mode))
        ready = replace(loaded, model=snn)
    if mode in SPIKING_MODES:
        with_coding(ready.model, spiking.coding)
    return ready
