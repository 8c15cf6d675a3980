"""``snnbench eval``: a suite through lm-eval for each execution mode of a model, with what it cost.

One pipeline, down into the models once and back once per mode: load (``plan_eval``) -> convert
to the mode (``models.convert.in_mode``) -> the adapter wraps the ready model -> lm-eval per
task -> accounting -> ``cost.json`` -> tables. Run folder ``results/<run-id>/`` (the default run
id is the model, the suite and the modes plus a hash of every setting, so a re-run of the same
command resumes it and any other setting starts another run):

    manifest.json                  the settings (model identity, modes, bits, T, tasks, limit ...),
                                   versions, machine, meters and their idle power, git commit
    <mode>/conversion.json         how a spiking mode was obtained (calibration, spiking config)
    <mode>/<task>/results.json     lm-eval's results (standard errors included)
    <mode>/<task>/samples.jsonl    lm-eval's per-sample records
    <mode>/<task>/cost.json        tokens, seconds, counted operations, measured and estimated energy
    <mode>/<task>/error.json       written instead when the task failed (the others go on)
    metrics.csv                    one row per model x mode x task x metric: value, stderr, documents
    cost.csv                       one row per model x mode x leaf task x figure (kind, source, unit)
    energy.csv                     one row per model x mode x leaf task x energy source

A task is finished when its ``cost.json`` exists; it is written last and atomically, so a killed
run resumes at the first unfinished task. A task whose metrics are not finite is marked failed,
never finished. Under ``torchrun --nproc_per_node N`` the documents are sharded over the
processes, costs are gathered, and rank 0 writes.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lm_eval import evaluator
from lm_eval.tasks import TaskManager

from models.calibrate import corpus_batches
from models.convert import in_mode
from tasks.files import FolderLock, atomic_write_json, atomic_write_text, dumps_strict

from ..energy.counting import cache_elements
from ..energy.memory import Variant, load_memory_presets, precision
from ..paired.runs import headlines, write_paired
from ..runs import git_commit, machine_info, read_json, versions
from .accounting import Accounting
from .adapter import SNNBenchLM, pick_device
from .costs import MemoryPricing, merge_ranks, task_record
from .identity import open_run
from .options import BOOTSTRAP_ITERS, CALIBRATION, CALIBRATION_BATCH, EvalOptions
from .plan import EvalPlan, energy_setup, finished, plan_eval
from .suites import SuiteTask
from .tables import write_tables

Say = Callable[[str], None]


class NonFiniteMetric(ValueError):
    """lm-eval returned a NaN or infinite metric: the task failed."""


def _evaluate(lm: SNNBenchLM, task: SuiteTask, limit: int | None, seed: int, manager: TaskManager,
              gen_kwargs: dict | None = None) -> dict[str, Any] | None:
    os.environ.setdefault("DISABLE_MULTIPROC", "1")  # lm-eval's bootstrap would fork the whole model once per core
    seeds = {f"{kind}_seed": seed for kind in ("random", "numpy_random", "torch_random", "fewshot_random")}
    return evaluator.simple_evaluate(model=lm, tasks=[task.task], num_fewshot=task.num_fewshot, limit=limit, task_manager=manager,
                                     gen_kwargs=gen_kwargs or None, log_samples=True, cache_requests=False, use_cache=None,
                                     bootstrap_iters=BOOTSTRAP_ITERS, **seeds)


def non_finite_metrics(results: dict[str, Any]) -> list[str]:
    """``task: metric,filter`` of every metric (not stderr) whose value is NaN or infinite."""
    bad = []
    for task, values in results.get("results", {}).items():
        for key, value in values.items():
            if "," in key and "_stderr," not in key and isinstance(value, float) and not math.isfinite(value):
                bad.append(f"{task}: {key}")
    return bad


def gather(lm: SNNBenchLM, value: Any) -> list[Any]:
    """Every rank's ``value`` on rank 0 (``[value]`` in a single process); an empty list elsewhere."""
    parts = lm.gather_object(value, dst=0)
    return list(parts) if parts is not None else []


def memory_pricing(model: torch.nn.Module, context: int | None) -> MemoryPricing:
    """The memory-aware estimate of a mode: ``ann`` at its float format, ``qat`` as a b-bit integer ANN, the spiking modes as an SNN
    with b-bit weights and activations in the model's spike coding; every built-in memory preset."""
    spiking = model.spiking
    dtype = next(model.parameters()).dtype
    if spiking.mode == "ann":
        variant = Variant(f"ANN {'fp32' if dtype == torch.float32 else 'fp16'}", precision("fp32" if dtype == torch.float32 else "fp16"))
    elif spiking.mode == "qat":
        variant = Variant(f"ANN int{spiking.bits}", precision(f"int{spiking.bits}"))
    else:
        coding = getattr(spiking, "coding", "rate")
        variant = Variant(f"SNN {coding} (int{spiking.bits})", precision(f"int{spiking.bits}"), spiking=True, coding=coding)
    parameters = sum(p.numel() for p in model.parameters())
    return MemoryPricing(tuple(load_memory_presets().values()), variant, parameters, cache_elements(model, context or 2048))


def run_task(lm: SNNBenchLM, accounting: Accounting, task: SuiteTask, folder: Path, plan: EvalPlan, options: EvalOptions) -> None:
    """Evaluate one task; rank 0 writes results, samples, the op counts by module and (last) cost.json."""
    accounting.tasks.clear()
    counter = accounting.counter()
    before = counter.snapshot() if counter is not None else {}
    for meter in plan.per_task:
        meter.start()
    started = time.perf_counter()
    lm.use_context_window(task.context_window(options.max_length))
    results = _evaluate(lm, task, task.limit_under(options.limit), options.seed, plan.manager, task.generation(options.max_gen_toks))
    wall = time.perf_counter() - started
    readings = [meter.stop() for meter in plan.per_task]
    by_module = counter.since(before) if counter is not None else {}
    ranks = gather(lm, ({name: c.to_dict() for name, c in accounting.tasks.items()}, {n: s.as_dict() for n, s in by_module.items()}))
    if plan.rank != 0:
        return
    costs, module_totals = merge_ranks(ranks)
    samples = results.pop("samples", {}) or {}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "results.json", results)
    atomic_write_text(folder / "samples.jsonl", "".join(dumps_strict({"task": t, **s}) + "\n" for t, rows in samples.items() for s in rows))
    bad = non_finite_metrics(results)
    if bad:
        raise NonFiniteMetric(f"non-finite metric(s) {', '.join(bad[:3])}: the task is marked failed, not done")
    record = task_record(task, wall, plan.world, costs, module_totals, readings, plan.presets, memory_pricing(lm.model, options.max_length))
    if module_totals:
        atomic_write_json(folder / "ops_by_module.json", dict(sorted(module_totals.items())))
    atomic_write_json(folder / "cost.json", record)


def _agree(plan: EvalPlan, prepare: Callable[[], Any]) -> Any:
    """Run ``prepare`` on rank 0 and share whether it failed: every rank raises the same error.
    Returns ``prepare``'s result on rank 0, None on the others."""
    result, error = None, [None]
    if plan.rank == 0:
        try:
            result = prepare()
        except ValueError as err:
            error = [str(err)]
    if plan.world > 1:
        dist.broadcast_object_list(error, src=0)
    if error[0] is not None:
        raise ValueError(error[0])
    return result


def _take_run_folder(plan: EvalPlan, options: EvalOptions) -> FolderLock:
    """Rank 0: take the run folder (lock, settings check, manifest)."""
    return open_run(plan.root, plan.settings, {"run_id": plan.root.name, "command": options.as_command(), "model_path": plan.loaded.source,
                                               "modes": plan.modes, "tasks": [t.__dict__ for t in plan.tasks], "limit": options.limit,
                                               "seed": options.seed, "device": plan.device, "versions": versions(), "machine": machine_info(),
                                               "git_commit": git_commit(), "processes": plan.world,
                                               "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def evaluate_run(options: EvalOptions, say: Say = print) -> tuple[int, Path]:
    """(exit status, run folder) of ``snnbench eval`` with ``options``; progress goes to ``say`` (rank 0 only)."""
    plan = plan_eval(options)
    lock = _agree(plan, lambda: _take_run_folder(plan, options))
    try:
        return _run(plan, options, say), plan.root
    finally:
        if lock is not None:
            lock.release()


def _meters(plan: EvalPlan, options: EvalOptions) -> None:
    """Meters for this process: NVML on every rank (its own GPU), host meters on one process per machine."""
    host = int(os.environ.get("LOCAL_RANK", "0")) == 0
    per_forward, per_task, _, notes = energy_setup(options.meters, plan.device, options.energy_presets, options.energy_presets_file)
    plan.per_forward = [m for m in per_forward if host or m.name.startswith("nvml")]
    plan.per_task = per_task if host else []
    plan.notes.extend(notes)
    for meter in plan.per_forward:
        if options.idle_seconds:
            idle = meter.measure_idle(options.idle_seconds)
            plan.notes.append(f"{meter.source}: idle power {idle:.2f} W over {options.idle_seconds} s (reported beside the raw joules, subtracted in 'above idle')"
                              if idle is not None else f"{meter.source}: idle power not measurable")


def _start(plan: EvalPlan, options: EvalOptions, say: Say) -> None:
    """Meters chosen and idle power measured; rank 0 records them in the manifest and says what runs where."""
    _meters(plan, options)
    if plan.rank != 0:
        return
    manifest = read_json(plan.root / "manifest.json")
    manifest["meters"] = [{"source": m.source, "kind": m.kind, "idle_watts": m.idle_watts} for m in plan.per_forward + plan.per_task]
    manifest["meter_notes"] = plan.notes
    atomic_write_json(plan.root / "manifest.json", manifest)
    say(f"run {plan.root}")
    for note in plan.notes:
        say(f"  {note}")


def _run(plan: EvalPlan, options: EvalOptions, say: Say) -> int:
    root = plan.root
    _start(plan, options, say)
    pending_by_mode = {mode: [t for t in plan.tasks if not finished(root / mode / t.task)] for mode in plan.modes}
    plan.loaded.model.to(pick_device(plan.device, plan.world))  # calibrate and run on this rank's device
    if plan.spiking_source is not None:
        plan.spiking_source.model.to(pick_device(plan.device, plan.world))
    failures = 0
    started = time.perf_counter()
    for mode in plan.modes:
        pending = pending_by_mode[mode]
        if not pending:
            if plan.rank == 0:
                say(f"  {mode}: all {len(plan.tasks)} tasks already done")
            continue
        calibration = corpus_batches(plan.loaded.tokenizer, CALIBRATION["data"], CALIBRATION["tokens"], CALIBRATION["window"], CALIBRATION_BATCH)
        source = plan.spiking_source if (plan.spiking_source is not None and mode != "ann") else plan.loaded
        ready = in_mode(source, mode, plan.spiking, calibration)
        accounting = Accounting(ready.model, meters=plan.per_forward, count_ops=True)
        lm = SNNBenchLM(model=ready, batch_size=options.batch_size, device=plan.device, max_length=options.max_length, accounting=accounting)
        if plan.rank == 0 and mode != plan.loaded.model.mode:
            origin = {"fine_tuned_checkpoint": source.source} if source is not plan.loaded else {"calibration": CALIBRATION}
            atomic_write_json(root / mode / "conversion.json", {"mode": mode, "spiking": lm.model.spiking.to_dict(), **origin})
        for task in pending:
            failures += _run_one(lm, accounting, task, root / mode / task.task, plan, options, mode, say)
        accounting.close()
    for meter in plan.per_task:
        meter.close()
    if plan.rank != 0:
        return 1 if failures else 0
    metrics, _, _ = write_tables(root, plan.loaded.name)
    say(f"\nwrote {root / 'metrics.csv'} ({len(metrics)} rows), cost.csv and energy.csv in {time.perf_counter() - started:.0f} s")
    if len(plan.modes) > 1:
        tokenizer = plan.loaded.tokenizer
        paired = write_paired(root, plan.modes, lambda text: tokenizer.encode(text, add_special_tokens=False).ids)
        for line in headlines(paired):
            say(f"  {line}")
        say(f"wrote {root / 'paired.csv'} (each mode against {plan.modes[0]}, document by document)")
    if failures:
        say(f"{failures} task(s) failed (see their error.json); running the same command again retries only those")
    return 1 if failures else 0


def _run_one(lm: SNNBenchLM, accounting: Accounting, task: SuiteTask, folder: Path, plan: EvalPlan, options: EvalOptions, mode: str,
             say: Say) -> int:
    """Run one task; a failure becomes error.json (the other tasks go on). Returns 1 on failure."""
    if plan.rank == 0:
        say(f"  {mode:<9} {task.task} ({'default' if task.num_fewshot is None else task.num_fewshot}-shot) ...")
    try:
        run_task(lm, accounting, task, folder, plan, options)
        if plan.rank == 0:
            (folder / "error.json").unlink(missing_ok=True)
        return 0
    except Exception as err:  # one task's crash must not lose the others
        if plan.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / "error.json", {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
            say(f"    failed: {type(err).__name__}: {err} (see {folder / 'error.json'})")
        return 1
