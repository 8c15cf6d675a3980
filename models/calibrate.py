"""Calibration for conversion (stage 2): activation statistics of the ANN, turned into scales and ranges.

Run the float model on a few batches of training text and keep, per operator, what its
spiking twin needs: the per-channel max |x| of the inputs of operators whose quantizer has a
static scale (``channel`` / ``tensor`` granularity) and the max |x| of every SiLU input (each
SNNSiLU is fitted to its own layer's range, so no gate value is clipped). Only running maxima
are kept, never activations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from tasks.corpus import text_ids

from .arch.float_ops import CountedLinear, FloatSiLU, RMSNorm
from .arch.llama import LlamaForCausalLM
from .spiking.quant import Quantizer


@dataclass
class ActivationStats:
    """Running per-channel max |input| of every linear layer and norm, and max |x| of every SiLU input."""

    channel_absmax: dict[str, torch.Tensor] = field(default_factory=dict)
    silu_absmax: dict[int, float] = field(default_factory=dict)
    tokens: int = 0

    def silu_ranges(self, margin: float = 1.05, floor: float = 1.0) -> dict[int, float]:
        """Per-layer SNNSiLU input range: the largest |x| seen, with a margin for unseen text."""
        return {layer: max(floor, value * margin) for layer, value in self.silu_absmax.items()}


@torch.no_grad()
def collect_stats(ann: LlamaForCausalLM, batches: Iterable[torch.Tensor]) -> ActivationStats:
    """Run the float model over ``batches`` of token ids and record the statistics calibration needs."""
    if ann.mode != "ann":
        raise ValueError(f"calibration statistics come from the float model; got a model in mode {ann.mode!r}")
    stats = ActivationStats()
    hooks = []

    def channel_hook(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            amax = x.abs().reshape(-1, x.shape[-1]).amax(0).float()
            previous = stats.channel_absmax.get(name)
            stats.channel_absmax[name] = amax if previous is None else torch.maximum(previous, amax)

        return hook

    for name, module in ann.named_modules():
        if isinstance(module, (CountedLinear, RMSNorm)):
            hooks.append(module.register_forward_pre_hook(channel_hook(name)))
        layer = re.search(r"layers\.(\d+)\.", name)
        if isinstance(module, FloatSiLU) and layer:

            def silu_hook(module: nn.Module, args: tuple, layer: int = int(layer.group(1))) -> None:
                stats.silu_absmax[layer] = max(stats.silu_absmax.get(layer, 0.0), float(args[0].detach().abs().max()))

            hooks.append(module.register_forward_pre_hook(silu_hook))
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
    """Every quantizer with a static scale, keyed by the path of the operator whose input it codes."""
    found = {}
    for name, module in model.named_modules():
        for attr in ("pre", "input_quant"):
            q = getattr(module, attr, None)
            if isinstance(q, Quantizer) and q.static:
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


def calibration_batches(ids: list[int], length: int, batch_size: int) -> list[torch.Tensor]:
    """Token ids cut into sequences of ``length`` (the tail that fills no sequence is dropped), ``batch_size`` sequences a batch."""
    n = len(ids) // length
    sequences = torch.tensor(ids[: n * length]).view(n, length)
    return [sequences[i : i + batch_size] for i in range(0, n, batch_size)]


def corpus_batches(tokenizer, data_set: str, tokens: int, length: int = 256, batch_size: int = 2) -> Iterator[torch.Tensor]:
    """The first ``tokens`` tokens of a built corpus' train split as ``calibration_batches``. A generator: the corpus
    is read when the batches are first asked for, so a model that needs no calibration never reads it."""
    yield from calibration_batches(text_ids(tokenizer, data_set, "train", tokens), length, batch_size)
