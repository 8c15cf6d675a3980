"""Calibration for conversion (stage 2): activation statistics of the ANN, turned into scales, ranges and thresholds.

What each operator needs comes from its class, never from its name or path:
- a float operator with ``observe_channels`` (linear layers, norms) records the per-channel max |x|
  of its input, for a spiking twin whose input quantizer has a static scale (``channel`` /
  ``tensor`` / ``smoothed``: its ``calibrated_input``);
- a float operator with a ``range_kind`` (SiLU, GELU) records the max |x| of its input per
  ``layer``: each staircase neuron (SNNSiLU, SNNGELU) is fitted to its own layer's range, so no
  value is clipped (BrainGPT B.2.2);
- a converted operator with ``calibrated_state`` (NeurTransformer's spike-based self-attention) is
  fitted to the activations of its float twin, the module at the same path of the float model
  (``reference_activations``), through its own ``calibrate``, layer after layer.
Only running maxima are kept for the first two, never activations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from tasks.corpus import text_ids

from .arch.base import CausalLM
from .spiking.encode import SpikeCoding
from .spiking.quant import Quantizer


@dataclass
class ActivationStats:
    """Running per-channel max |input| of operators with ``observe_channels``, max |input| per (range kind, layer)."""

    channel_absmax: dict[str, torch.Tensor] = field(default_factory=dict)
    layer_absmax: dict[str, dict[int, float]] = field(default_factory=dict)
    tokens: int = 0

    def ranges(self, margin: float = 1.05, floor: float = 1.0) -> dict[str, dict[int, float]]:
        """Per range kind and layer, the staircase's input range: the largest |x| seen, with a margin for unseen text."""
        return {kind: {layer: max(floor, value * margin) for layer, value in seen.items()} for kind, seen in self.layer_absmax.items()}


def _channel_hook(stats: ActivationStats, name: str):
    def hook(module: nn.Module, args: tuple) -> None:
        x = args[0].detach()
        amax = x.abs().reshape(-1, x.shape[-1]).amax(0).float()
        previous = stats.channel_absmax.get(name)
        stats.channel_absmax[name] = amax if previous is None else torch.maximum(previous, amax)

    return hook


def _range_hook(stats: ActivationStats, kind: str, layer: int):
    def hook(module: nn.Module, args: tuple) -> None:
        seen = stats.layer_absmax.setdefault(kind, {})
        seen[layer] = max(seen.get(layer, 0.0), float(args[0].detach().abs().max()))

    return hook


@torch.no_grad()
def collect_stats(ann: CausalLM, batches: Iterable[torch.Tensor]) -> ActivationStats:
    """Run the float model over ``batches`` of token ids and record the statistics calibration needs."""
    if ann.mode != "ann":
        raise ValueError(f"calibration statistics come from the float model; got a model in mode {ann.mode!r}")
    stats = ActivationStats()
    hooks = []
    for name, module in ann.named_modules():
        if getattr(type(module), "observe_channels", False):
            hooks.append(module.register_forward_pre_hook(_channel_hook(stats, name)))
        kind = getattr(type(module), "range_kind", None)
        if kind is not None:
            hooks.append(module.register_forward_pre_hook(_range_hook(stats, kind, module.layer)))
    device = next(ann.parameters()).device  # calibrate where the model lives (a rank's GPU under torchrun)
    try:
        for ids in batches:
            ann(ids.to(device))
            stats.tokens += ids.numel()
    finally:
        for hook in hooks:
            hook.remove()
    if stats.tokens == 0:
        raise ValueError("calibration needs at least one batch of text")
    return stats


def static_quantizers(model: nn.Module) -> dict[str, Quantizer]:
    """Every static-scale quantizer of an operator's input (``calibrated_input``), keyed by the operator's path."""
    found = {}
    for name, module in model.named_modules():
        q = module.calibrated_input if isinstance(module, SpikeCoding) else None
        if q is not None and q.static:
            found[name] = q
    return found


def apply_stats(model: nn.Module, stats: ActivationStats) -> None:
    """Set every static quantizer's scale from the float model's statistics of the same operator."""
    for name, q in static_quantizers(model).items():
        if name not in stats.channel_absmax:
            raise ValueError(f"no calibration statistics for {name}; collect them from the float model of the same architecture")
        amax = stats.channel_absmax[name]
        q.observed_absmax.zero_()
        q.observe(amax.reshape(1, -1) if q.spec.granularity in ("channel", "smoothed") else amax.max().reshape(1))
        q.finish_calibration()


def _forward_inputs(model: nn.Module, modules: dict[str, nn.Module], ids: torch.Tensor) -> dict[str, tuple]:
    """The positional inputs each of ``modules`` receives when ``model`` runs on ``ids``."""
    seen: dict[str, tuple] = {}
    hooks = [m.register_forward_pre_hook(lambda module, args, name=name: seen.__setitem__(name, args)) for name, m in modules.items()]
    try:
        model(ids)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


@torch.no_grad()
def calibrate_to_float(model: nn.Module, ann: nn.Module, batches: Iterable[torch.Tensor], quantile: float = 0.999) -> list[str]:
    """Fit every operator with ``calibrated_state`` to its float twin on ``batches`` (run as one batch), in forward order:
    each sees its own inputs through the operators before it, already calibrated. Returns their paths."""
    targets = {name: m for name, m in model.named_modules() if getattr(type(m), "calibrated_state", ())}
    if not targets:
        return []
    twins = dict(ann.named_modules())
    lacking = [name for name in targets if not hasattr(twins.get(name), "reference_activations")]
    if lacking:
        raise ValueError(f"the float model has no float twin (a module with reference_activations) at {lacking[:3]}")
    ids = torch.cat(list(batches)).to(next(model.parameters()).device)
    float_inputs = _forward_inputs(ann, {name: twins[name] for name in targets}, ids)
    for name, module in targets.items():
        reference = twins[name].reference_activations(*float_inputs[name])
        module.calibrate(_forward_inputs(model, {name: module}, ids)[name], reference, quantile)
    return list(targets)


def calibration_batches(ids: list[int], length: int, batch_size: int) -> list[torch.Tensor]:
    """Token ids cut into sequences of ``length`` (the tail that fills no sequence is dropped), ``batch_size`` sequences a batch."""
    n = len(ids) // length
    sequences = torch.tensor(ids[: n * length]).view(n, length)
    return [sequences[i : i + batch_size] for i in range(0, n, batch_size)]


def corpus_batches(tokenizer, data_set: str, tokens: int, length: int = 256, batch_size: int = 2) -> Iterator[torch.Tensor]:
    """The first ``tokens`` tokens of a built corpus' train split as ``calibration_batches``. A generator: the corpus
    is read when the batches are first asked for, so a model that needs no calibration never reads it."""
    yield from calibration_batches(text_ids(tokenizer, data_set, "train", tokens), length, batch_size)
