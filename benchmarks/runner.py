"""Runs the chosen benchmarks (``snnbench bench``) and writes ``bench.json`` and ``bench.md``."""

from __future__ import annotations

import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from harness.allocator import tune_allocator
from harness.runs import git_commit, machine_info, versions
from models.load import LoadedModel, load_model
from models.spiking import kernels
from tasks.files import atomic_write_json, atomic_write_text

from .flops import model_flop_utilization
from .instrumentation import instrumentation_overhead
from .neuron import spiking_core_vs_spikingjelly
from .operators import stepped_vs_fused
from .table import Row, render_markdown
from .throughput import adapter_vs_hflm, spiking_vs_float
from .training import training_step
from .workload import FULL, QUICK, TINY_MODEL, Context, tiny_random_model

BENCHMARKS = {
    1: "evaluation throughput, adapter ann vs lm-eval HFLM",
    2: "snn-fused vs ann throughput of the adapter",
    3: "snn (time-stepped) vs snn-fused per operator kind",
    4: "instrumentation overhead (counters and energy meters)",
    5: "model FLOP utilization of the ann forward",
    6: "training step time, qat vs ann",
    7: "spiking core vs SpikingJelly's multi-step IF neuron",
}
NEEDS_MODEL = (1, 2, 4, 5)


RUNNERS: dict[int, Callable[[Context], list[Row]]] = {
    1: adapter_vs_hflm,
    2: spiking_vs_float,
    3: stepped_vs_fused,
    4: instrumentation_overhead,
    5: model_flop_utilization,
    6: training_step,
    7: spiking_core_vs_spikingjelly,
}


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _installed_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def parse_only(text: str | None) -> list[int]:
    if text is None or not text.strip():
        return sorted(BENCHMARKS)
    chosen = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in BENCHMARKS:
            raise ValueError(f"--only takes benchmark numbers 1..{len(BENCHMARKS)} separated by commas, got {text!r}")
        chosen.append(int(part))
    return sorted(set(chosen))


def resolve_model(name: str, chosen: list[int], quick: bool) -> tuple[LoadedModel | None, str | None]:
    """(LoadedModel, fallback reason or None); a one-line ValueError when SmolLM2 is needed and absent."""
    if not any(b in NEEDS_MODEL for b in chosen):
        return None, None
    if name == TINY_MODEL:
        if not quick:
            raise ValueError(f"--model {TINY_MODEL} is for smoke runs; add --quick")
        return tiny_random_model(), "tiny random Llama asked for; not SmolLM2, goals not judged"
    try:
        loaded = load_model(name)
    except ValueError as err:
        needing = [str(b) for b in chosen if b in NEEDS_MODEL]
        needs = f"benchmarks {', '.join(needing)} need" if len(needing) > 1 else f"benchmark {needing[0]} needs"
        if not quick:
            raise ValueError(f"{needs} the model: {err} (or use --quick for a tiny random Llama, "
                             f"or leave {', '.join(needing)} out of --only)") from None
        return tiny_random_model(), f"tiny random Llama: {name} not available ({err}); goals not judged"
    if loaded.model.mode != "ann":
        raise ValueError(f"benchmarks 1, 2, 4, 5 need a float (ann) model; {name} is in mode {loaded.model.mode!r}")
    return loaded, None


def run_bench(options: dict[str, Any]) -> int:
    """Run the chosen benchmarks and write ``bench.json`` and ``bench.md`` into ``options['out']``."""
    chosen = parse_only(options.get("only"))
    quick = bool(options.get("quick"))
    repeats = int(options.get("repeats") or 3)
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    threads = options.get("threads")
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    batch_size = int(options.get("batch_size") or 8)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    out = Path(options.get("out") or "results/bench")
    loaded, fallback = resolve_model(options.get("model") or "smollm2-135m", chosen, quick)
    ctx = Context(QUICK if quick else FULL, repeats, batch_size, int(options.get("seed") or 0), loaded, fallback)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    commit = git_commit()  # the code that runs is the code at the start (commits may land during a long run)
    started = time.perf_counter()
    rows: list[Row] = []
    errors: list[dict[str, str]] = []
    for number in chosen:
        print(f"benchmark {number}: {BENCHMARKS[number]} ...", flush=True)
        t0 = time.perf_counter()
        try:
            new = RUNNERS[number](ctx)
        except Exception as err:  # one benchmark's failure must not lose the others
            errors.append({"benchmark": str(number), "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
            print(f"  failed: {type(err).__name__}: {err}", flush=True)
            continue
        for row in new:
            row.judge(tiny_model=ctx.tiny and number in NEEDS_MODEL)
            if ctx.tiny and number in NEEDS_MODEL:
                row.benchmark += f" [{TINY_MODEL}, not SmolLM2]"
        rows.extend(new)
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    all_versions = {**versions(), "spikingjelly": _installed_version("spikingjelly")}
    model_info = {"name": loaded.name if loaded is not None else None, "source": loaded.source if loaded is not None else None,
                  "fallback": fallback, "parameters": loaded.model.num_parameters() if loaded is not None else None}
    if loaded is None:
        model_info["name"] = "none needed"
    report = {
        "command": {k: v for k, v in options.items()},
        "benchmarks": {str(n): BENCHMARKS[n] for n in chosen},
        "quick": quick,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "sizes": asdict(ctx.sizes),
        "model": model_info,
        "machine": {**machine_info(), "cpu_model": _cpu_model()},
        "versions": all_versions,
        "git_commit": commit,
        "started_at": started_at,
        "seconds": time.perf_counter() - started,
        "noise": "ratios are per repeat with the two sides interleaved; figures on a shared machine are noisy",
        "allocator": "glibc malloc without mmap, freed blocks kept (harness/allocator.py), both sides alike" if tune_allocator() else "system default",
        "kernels": kernels.chosen() or "the snn-fused coding kernels were not used",
        "rows": [r.as_dict() for r in rows],
        "errors": errors,
        "notes": ctx.notes + [f"benchmark {e['benchmark']} failed: {e['error']}" for e in errors],
    }
    atomic_write_json(out / "bench.json", report)
    markdown = render_markdown(report, rows)
    atomic_write_text(out / "bench.md", markdown)
    print()
    print(markdown)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'} in {report['seconds']:.0f} s")
    return 1 if errors else 0
