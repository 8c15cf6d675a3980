"""The per-layer conversion audit: what spike coding did to each operator of a converted model.

For every spiking operator it reports the mean scale of its input coding, the clipping rate
(inputs beyond T * scale, the SpikeZIP-TF critique of BrainGPT's appendix A), the time steps
it actually needs (its largest spike count: later steps are silent), its spikes, spike rate
and spikes per token, and the max and mean error of its output against the same operator's
output in the float model on the same text (errors accumulate through the layers, which is
what a user of the converted model sees). The operators audited are those that spike-code their
own input (``SpikeCoding``), each with the time steps of that coding (``coding_steps``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from tasks.files import atomic_write_json, atomic_write_text

from .spiking import counters, observe
from .spiking.counters import OpCounter
from .spiking.encode import SpikeCoding
from .spiking.observe import EncodingObserver


@dataclass
class LayerAudit:
    name: str
    kind: str
    time_steps: int
    scale: float
    clip_rate: float
    steps_needed: int
    spikes: int
    spike_rate: float
    spikes_per_token: float
    max_abs_error: float
    mean_abs_error: float
    relative_error: float


@torch.no_grad()
def audit_conversion(ann: nn.Module, snn: nn.Module, batches: Iterable[torch.Tensor]) -> list[LayerAudit]:
    """Run both models on ``batches`` and audit every spiking operator of ``snn`` (mode snn-fused or qat)."""
    if getattr(snn, "mode", None) == "snn":
        raise ValueError("audit the snn-fused model (same outputs, and its softmax runs as one call)")
    targets = {n: m for n, m in snn.named_modules() if isinstance(m, SpikeCoding)}
    reference_modules = dict(ann.named_modules())
    if not any(n in reference_modules for n in targets):
        raise ValueError("the float model shares no operator paths with the converted one: audit a model against its own float model")
    errors: dict[str, list[float]] = {n: [0.0, 0.0, 0.0, 0] for n in targets}  # max, sum abs err, sum abs ref, count
    captured: dict[str, torch.Tensor] = {}
    tokens = 0

    def capture(name: str):
        def hook(module, args, output):
            captured[name] = output.detach()

        return hook

    def compare(name: str):
        def hook(module, args, output):
            reference = captured.pop(name, None)
            if reference is None or reference.shape != output.shape:
                return
            diff = (output.detach().float() - reference.float()).abs()
            e = errors[name]
            e[0] = max(e[0], float(diff.max()))
            e[1] += float(diff.sum())
            e[2] += float(reference.float().abs().sum())
            e[3] += diff.numel()

        return hook

    compared = [n for n in targets if n in reference_modules]  # e.g. the V coding has no float counterpart
    handles = [reference_modules[n].register_forward_hook(capture(n)) for n in compared]
    handles += [targets[n].register_forward_hook(compare(n)) for n in compared]
    try:
        with OpCounter(snn) as counter, EncodingObserver(snn) as observer:
            device = next(snn.parameters()).device
            for ids in batches:
                ids = ids.to(device)
                ann(ids)
                snn(ids)
                captured.clear()
                tokens += ids.numel()
    finally:
        for h in handles:
            h.remove()
    rows = []
    for name, module in targets.items():
        ops = counter.totals.get(name, counters.OpStats())
        enc = observer.stats.get(name, observe.EncodingStats())
        max_err, sum_err, sum_ref, n = errors[name]
        rows.append(
            LayerAudit(
                name=name,
                kind=type(module).__name__,
                time_steps=module.coding_steps,
                scale=enc.mean_scale,
                clip_rate=enc.clip_rate,
                steps_needed=enc.max_count,
                spikes=ops.spikes,
                spike_rate=ops.spikes / ops.neuron_steps if ops.neuron_steps else math.nan,
                spikes_per_token=ops.spikes / tokens if tokens else math.nan,
                max_abs_error=max_err if n else math.nan,
                mean_abs_error=sum_err / n if n else math.nan,
                relative_error=sum_err / sum_ref if sum_ref else math.nan,
            )
        )
    return rows


def ruled(header: str, lines: Iterable[str]) -> str:
    """A fixed-width table: its header, a rule as wide, its lines."""
    return "\n".join([header, "-" * len(header), *lines])


def audit_table(rows: list[LayerAudit]) -> str:
    """A readable fixed-width table of the audit."""
    header = f"{'operator':<42} {'kind':<22} {'T':>5} {'scale':>9} {'clip%':>7} {'T need':>6} {'spike rate':>10} {'spikes/tok':>10} {'max err':>9} {'mean err':>9} {'rel err':>8}"
    return ruled(header, (
        f"{r.name:<42} {r.kind:<22} {r.time_steps:>5} {r.scale:>9.3g} {100 * r.clip_rate:>7.3f} {r.steps_needed:>6} {r.spike_rate:>10.4f} "
        f"{r.spikes_per_token:>10.1f} {r.max_abs_error:>9.3g} {r.mean_abs_error:>9.3g} {r.relative_error:>8.3%}" for r in rows
    ))


def worst_layers(rows: list[LayerAudit], k: int = 5) -> list[LayerAudit]:
    """The ``k`` operators with the largest relative output error."""
    return sorted((r for r in rows if not math.isnan(r.relative_error)), key=lambda r: -r.relative_error)[:k]


def write_audit(rows: list[LayerAudit], folder: Path, extra: dict | None = None) -> tuple[Path, Path]:
    """``audit.json`` (rows + extra) and ``audit.txt`` (the table) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_json(folder / "audit.json", {**(extra or {}), "layers": [asdict(r) for r in rows]})
    text_path = atomic_write_text(folder / "audit.txt", audit_table(rows) + "\n")
    return json_path, text_path
