"""``snnbench eval``: a suite through lm-eval for each execution mode of a model, with what it cost.

Run folder ``results/<run-id>/`` (the default run id is the model, the suite and the modes plus
a hash of every setting, so a re-run of the same command resumes it and any other setting
starts another run):

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

Every argument and input is checked before any work starts. A task is finished when its
``cost.json`` exists; it is written last and atomically, so a killed run resumes at the first
unfinished task. A task whose metrics are not finite is marked failed, never finished.
Under ``torchrun --nproc_per_node N`` the documents are sharded over the processes, costs are
gathered, and rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from models.arch.spiking_config import MODES, SpikingConfig
from tasks.files import atomic_write_json, atomic_write_text, check_writable, dumps_strict

from .accounting import Accounting, TaskCost
from .data_cli import use_data_dir
from .run_identity import check_run_id, default_run_id, model_identity, open_run
from .runs import git_commit, machine_info, read_json, versions
from .suites import SuiteTask, resolve_suite

CALIBRATION = {"data": "webtext", "split": "train", "tokens": 1024, "window": 256}  # what the adapter calibrates on
BOOTSTRAP_ITERS = 1000  # lm-eval's standard errors: closed form for means, this many resamples for perplexities


class NonFiniteMetric(ValueError):
    """lm-eval returned a NaN or infinite metric: the task failed."""


# ---------------------------------------------------------------- validation (before any work)


def check_tasks(tasks: list[SuiteTask]) -> Any:
    """The TaskManager over snnbench's task folder; unknown task names are a one-line error."""
    from lm_eval.tasks import TaskManager

    from tasks import loader

    manager = TaskManager(include_path=str(Path(loader.__file__).parent), include_defaults=False)
    known = set(manager.all_tasks)
    unknown = [t.task for t in tasks if t.task not in known]
    if unknown:
        raise ValueError(f"unknown task {', '.join(repr(u) for u in unknown)}; snnbench tasks start with snnbench_ (e.g. snnbench_arc_easy)")
    return manager


def _leaf_configs(manager: Any, name: str, seen: set[str]) -> list[dict[str, Any]]:
    """The configs of the leaf tasks under a task, group or tag name of ``manager``'s index."""
    from lm_eval.tasks._index import Kind

    entry = manager.task_index.get(name)
    if entry is None or name in seen:
        return []
    seen.add(name)
    if entry.kind == Kind.TAG:
        members = [n for n, e in manager.task_index.items() if name in e.tags]
    elif entry.kind == Kind.GROUP:
        members = [m if isinstance(m, str) else m.get("task", "") for m in (entry.cfg or {}).get("task", [])]
    else:
        return [entry.cfg or {}]
    return [cfg for member in members for cfg in _leaf_configs(manager, member, seen)]


def required_data_sets(manager: Any, tasks: list[SuiteTask]) -> dict[str, str]:
    """Data set -> the first task that needs it, read from the task configs' ``dataset_kwargs``."""
    needed: dict[str, str] = {}
    for task in tasks:
        for cfg in _leaf_configs(manager, task.task, set()):
            data_set = (cfg.get("dataset_kwargs") or {}).get("data_set")
            if data_set:
                needed.setdefault(data_set, task.task)
    return needed


def check_data_sets(needed: dict[str, str]) -> None:
    """Each data set in ``needed`` is built here; a one-line error naming the fetch command otherwise."""
    from tasks.datasets import DATASETS, is_present
    from tasks.fetch import data_dir

    root = data_dir()
    missing = [name for name in needed if name not in DATASETS or not is_present(DATASETS[name], root)]
    if missing:
        first = missing[0]
        raise ValueError(f"{needed[first]} needs data set '{first}', which is not built in {root}; run `snnbench data fetch {' '.join(missing)}`")


def check_device(device: str | None) -> str:
    """``cpu``, ``cuda`` or ``cuda:<i>`` that exists here (default: cuda when available)."""
    import re

    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"--device must be cpu, cuda or cuda:<index>, got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_numbers(args) -> None:
    """The numeric arguments, each a one-line error naming its flag."""
    for flag, value, low in (("--limit", args.limit, 1), ("--max-length", args.max_length, 1), ("--max-gen-toks", args.max_gen_toks, 1),
                             ("--batch-size", args.batch_size, 1), ("--idle-seconds", args.idle_seconds, 0)):
        if value is not None and value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}" + (" (or left out for the whole test set)" if flag == "--limit" else ""))


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise ValueError(f"--modes must list some of {', '.join(MODES)}, got {text!r}")
    return list(dict.fromkeys(modes))


def spiking_settings(args) -> SpikingConfig:
    """The conversion settings (bits, T, granularity), validated now rather than at the first spiking task."""
    try:
        return SpikingConfig(mode="snn-fused", bits=args.bits, time_steps=args.time_steps,
                             linear_granularity=args.granularity, norm_granularity=args.granularity)
    except ValueError as err:
        raise ValueError(f"--bits/--time-steps: {err}") from None


def energy_setup(meter_kinds: str, device: str, preset_names: str, presets_file: str | None) -> tuple[list, list, list, list[str]]:
    """(per-batch meters, per-task meters, presets, notes)."""
    from .energy import select_meters

    kinds = check_meters(meter_kinds)
    # Counter meters are read around every forward; their deltas add up over many short windows,
    # so no window is too short for them (CodeCarbon samples, so it gets one window per task).
    meters, notes = select_meters(device, kinds, options={"nvml": {"min_seconds": 0}, "rapl": {"min_seconds": 0}})
    per_task = [m for m in meters if m.name == "codecarbon"]
    per_batch = [m for m in meters if m.name != "codecarbon"]
    return per_batch, per_task, check_presets(preset_names, presets_file), notes


def check_meters(meter_kinds: str) -> list[str] | None:
    """``--meters``: None for auto, else the meter names (a one-line error for unknown ones)."""
    if meter_kinds == "auto":
        return None
    kinds = [] if meter_kinds == "none" else [k.strip() for k in meter_kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ("nvml", "rapl", "codecarbon")]
    if unknown:
        raise ValueError(f"--meters: unknown meter {unknown[0]!r}; give auto, none, or a list of nvml,rapl,codecarbon")
    return kinds


def check_presets(preset_names: str, presets_file: str | None) -> list:
    """The named energy presets (and a user's preset file), or a one-line error listing the known ones."""
    from .energy import load_presets

    presets = load_presets(Path(presets_file) if presets_file else None)
    chosen = []
    for name in preset_names.split(","):
        if name not in presets:
            raise ValueError(f"unknown energy preset {name!r}; known: {', '.join(presets)} (add your own with --energy-presets FILE)")
        chosen.append(presets[name])
    return chosen


def finished(folder: Path) -> bool:
    """Whether the task in ``folder`` finished: its cost.json exists and is a cost record."""
    path = folder / "cost.json"
    if not path.exists():
        return False
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("total"), dict) or not isinstance(record.get("subtasks"), dict):
        raise ValueError(f"{path}: not a cost record (damaged?); delete it to run that task again")
    return True


# ---------------------------------------------------------------- the plan


@dataclass
class EvalPlan:
    """Everything ``snnbench eval`` checked before starting: what to run, where, and how to measure it."""

    loaded: Any
    modes: list[str]
    tasks: list[SuiteTask]
    manager: Any
    spiking: SpikingConfig
    device: str
    presets: list
    settings: dict[str, Any]
    root: Path
    rank: int = 0
    world: int = 1
    per_batch: list = field(default_factory=list)
    per_task: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def eval_settings(args, identity: dict[str, str], modes: list[str], tasks: list[SuiteTask], spiking: SpikingConfig,
                  base_mode: str, device: str, presets: list) -> dict[str, Any]:
    """What makes a run this run: two runs with different settings never share a folder."""
    converts = base_mode == "ann" and any(m != "ann" for m in modes)
    return {
        "model": {"name": identity["name"], "sha256": identity["sha256"], "mode": base_mode},
        "modes": modes,
        "conversion": {"bits": spiking.bits, "time_steps": spiking.T, "granularity": args.granularity, "calibration": CALIBRATION} if converts else None,
        "tasks": [{"task": t.task, "num_fewshot": t.num_fewshot} for t in tasks],
        "limit": args.limit,
        "seed": args.seed,
        "max_length": args.max_length,
        "max_gen_toks": args.max_gen_toks,
        "batch_size": args.batch_size,
        "device": device.partition(":")[0],
        "energy": {"meters": args.meters, "presets": [p.as_dict() for p in presets]},
        "versions": {"snnbench": _version("snnbench"), "lm_eval": _version("lm_eval")},
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def plan_eval(args) -> EvalPlan:
    """Check every argument and input, in order of cost; nothing is evaluated here."""
    from models.load import load_model
    from tasks.datasets import DATASETS, is_present
    from tasks.fetch import data_dir

    from .lm import _distributed

    use_data_dir(args.data_dir)
    check_numbers(args)
    modes = parse_modes(args.modes)
    spiking = spiking_settings(args)
    device = check_device(args.device)
    if args.run_id is not None:
        check_run_id(args.run_id)
    check_meters(args.meters)
    presets = check_presets(args.energy_preset, args.energy_presets)
    tasks = resolve_suite(args.suite, args.tasks)
    manager = check_tasks(tasks)
    check_data_sets(required_data_sets(manager, tasks))
    check_writable(args.results, "--results")
    loaded = load_model(args.model)  # checks the files, the config and that every weight is finite
    if loaded.tokenizer is None:
        raise ValueError(f"model {args.model!r} has no tokenizer; lm-eval needs one")
    base_mode = loaded.model.mode
    if base_mode != "ann" and "ann" in modes:
        raise ValueError(f"model {args.model!r} is a converted model in mode {base_mode}; it runs as qat, snn or snn-fused, not ann "
                         "(evaluate the float model it came from for the ANN)")
    if base_mode == "ann" and any(m != "ann" for m in modes) and not is_present(DATASETS[CALIBRATION["data"]], data_dir()):
        raise ValueError(f"converting to a spiking mode calibrates on '{CALIBRATION['data']}', which is not built; "
                         f"run `snnbench data fetch {CALIBRATION['data']}`")
    rank, world = _distributed()
    if world > 1 and device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    identity = model_identity(loaded.source, loaded.name)
    settings = eval_settings(args, identity, modes, tasks, spiking, base_mode, device, presets)
    run_id = args.run_id or default_run_id(f"{loaded.name}__{args.suite or '+'.join(t.task for t in tasks)}__{'-'.join(modes)}", settings)
    root = Path(args.results) / run_id
    plan = EvalPlan(loaded, modes, tasks, manager, spiking, device, presets, settings, root, rank, world)
    plan.notes.append(f"model {identity['path']} (sha256 {identity['sha256'][:12]})")
    return plan


# ---------------------------------------------------------------- one task


def _evaluate(lm, task: SuiteTask, limit: int | None, seed: int, manager, gen_kwargs: dict | None = None) -> dict[str, Any] | None:
    from lm_eval import evaluator

    os.environ.setdefault("DISABLE_MULTIPROC", "1")  # lm-eval's bootstrap would fork the whole model once per core
    return evaluator.simple_evaluate(
        gen_kwargs=gen_kwargs or None,
        model=lm,
        tasks=[task.task],
        num_fewshot=task.num_fewshot,
        limit=limit,
        task_manager=manager,
        log_samples=True,
        cache_requests=False,
        use_cache=None,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        bootstrap_iters=BOOTSTRAP_ITERS,
    )


def non_finite_metrics(results: dict[str, Any]) -> list[str]:
    """``task: metric,filter`` of every metric (not stderr) whose value is NaN or infinite."""
    bad = []
    for task, values in results.get("results", {}).items():
        for key, value in values.items():
            if "," in key and "_stderr," not in key and isinstance(value, float) and not math.isfinite(value):
                bad.append(f"{task}: {key}")
    return bad


def cost_record(cost: TaskCost, presets: list, task_readings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A cost as JSON: counted operations, and energy kept apart by kind, each entry with its source."""
    from .energy import estimate

    measured = []
    for source, joules in cost.measured_joules.items():
        entry: dict[str, Any] = {"source": source, "joules": joules, "attributed": "per forward, by token share"}
        if source in cost.idle_joules:
            entry.update(idle_joules=cost.idle_joules[source], joules_above_idle=joules - cost.idle_joules[source])
        measured.append(entry)
    estimated = [{"source": k, "joules": v, "attributed": "per forward, by token share"} for k, v in cost.estimated_joules.items()]
    for reading in task_readings or []:
        (measured if reading["kind"] == "measured" else estimated).append({k: v for k, v in reading.items() if k != "kind"})
    for preset in presets:
        e = estimate(cost.ops, preset)
        estimated.append({"source": e.source, "joules": e.joules, "attributed": "counted operations x preset",
                          "parts": {k: v for k, v in e.as_dict().items() if k not in ("joules", "source", "kind", "citation")}})
    return {"tokens": cost.tokens, "forwards": cost.windows, "seconds": cost.seconds, "ops": cost.ops.as_dict(),
            "measured": measured, "estimated": estimated}


def split_reading(reading: Any, share: float) -> dict[str, Any] | None:
    """A per-task meter reading (CodeCarbon) as a cost entry, ``share`` of it; None without joules."""
    if reading.joules is None:
        return None
    return {"kind": reading.kind, "source": reading.source, "joules": reading.joules * share, "seconds": reading.seconds * share,
            "attributed": "one window per task" + (f", {share:.4g} of it by forward time" if share != 1 else ""),
            "details": {k: v for k, v in reading.details.items() if "joules" not in k}}


def gather(lm, value: Any) -> list[Any]:
    """Every rank's ``value`` on rank 0 (``[value]`` in a single process); an empty list elsewhere."""
    parts = lm.gather_object(value, dst=0)
    return list(parts) if parts is not None else []


def run_task(lm, accounting: Accounting, task: SuiteTask, folder: Path, plan: EvalPlan, args, gen_kwargs=None) -> None:
    """Evaluate one task; rank 0 writes results, samples, the op counts by module and (last) cost.json."""
    accounting.tasks.clear()
    counter = accounting.counter()
    before = counter.snapshot() if counter is not None else {}
    for meter in plan.per_task:
        meter.start()
    started = time.perf_counter()
    results = _evaluate(lm, task, args.limit, args.seed, plan.manager, gen_kwargs)
    wall = time.perf_counter() - started
    readings = [meter.stop() for meter in plan.per_task]
    by_module = {name: stats for name, stats in counter.since(before).items()} if counter is not None else {}
    ranks = gather(lm, ({name: c.to_dict() for name, c in accounting.tasks.items()}, {n: s.as_dict() for n, s in by_module.items()}))
    if plan.rank != 0:
        return
    costs: dict[str, TaskCost] = {}
    module_totals: dict[str, Any] = {}
    for rank_costs, rank_modules in ranks:
        for name, cost in rank_costs.items():
            costs[name] = costs[name].merge(TaskCost.from_dict(cost)) if name in costs else TaskCost.from_dict(cost)
        for name, stats in rank_modules.items():
            module_totals[name] = {k: module_totals.get(name, {}).get(k, 0) + v for k, v in stats.items() if k != "activation_sparsity"}
    samples = results.pop("samples", {}) or {}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "results.json", results)
    atomic_write_text(folder / "samples.jsonl", "".join(dumps_strict({"task": t, **s}) + "\n" for t, rows in samples.items() for s in rows))
    bad = non_finite_metrics(results)
    if bad:
        raise NonFiniteMetric(f"non-finite metric(s) {', '.join(bad[:3])}: the task is marked failed, not done")
    total = TaskCost()
    for cost in costs.values():
        total = total.merge(cost)
    if module_totals:  # the exact count (shares of mixed batches are rounded per task)
        from models.spiking.counters import OpStats

        total.ops = sum((OpStats(**s) for s in module_totals.values()), OpStats())
    forward_seconds = sum(c.seconds for c in costs.values()) or 1.0
    subtasks = {name: cost_record(cost, plan.presets, [r for r in (split_reading(x, cost.seconds / forward_seconds) for x in readings) if r])
                for name, cost in costs.items()}
    record = {"task": task.task, "num_fewshot": task.num_fewshot, "wall_seconds": wall, "processes": plan.world,
              "total": cost_record(total, plan.presets, [r for r in (split_reading(x, 1.0) for x in readings) if r]), "subtasks": subtasks}
    if module_totals:
        atomic_write_json(folder / "ops_by_module.json", dict(sorted(module_totals.items())))
    atomic_write_json(folder / "cost.json", record)


# ---------------------------------------------------------------- the command


def _agree(plan: EvalPlan, prepare) -> Any:
    """Run ``prepare`` on rank 0 and share whether it failed: every rank raises the same error.
    Returns ``prepare``'s result on rank 0, None on the others."""
    result, error = None, [None]
    if plan.rank == 0:
        try:
            result = prepare()
        except ValueError as err:
            error = [str(err)]
    if plan.world > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(error, src=0)
    if error[0] is not None:
        raise ValueError(error[0])
    return result


def _prepare(plan: EvalPlan, args):
    """Rank 0: take the run folder (lock, settings check, manifest), choose meters, measure idle power."""
    lock = open_run(plan.root, plan.settings, {"run_id": plan.root.name, "command": vars(args), "model_path": plan.loaded.source,
                                               "modes": plan.modes, "tasks": [t.__dict__ for t in plan.tasks], "limit": args.limit,
                                               "seed": args.seed, "device": plan.device, "versions": versions(), "machine": machine_info(),
                                               "git_commit": git_commit(), "processes": plan.world,
                                               "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return lock


def run_eval(args) -> int:
    return evaluate_run(args)[0]


def evaluate_run(args) -> tuple[int, Path]:
    """(exit status, run folder) of ``snnbench eval`` with ``args``."""
    from .lm import SNNBenchLM
    from .tables import write_tables

    plan = plan_eval(args)
    lock = _agree(plan, lambda: _prepare(plan, args))
    try:
        return _run(plan, args, SNNBenchLM, write_tables), plan.root
    finally:
        if lock is not None:
            lock.release()


def _meters(plan: EvalPlan, args) -> None:
    """Meters for this process: NVML on every rank (its own GPU), host meters on one process per machine."""
    host = int(os.environ.get("LOCAL_RANK", "0")) == 0
    per_batch, per_task, _, notes = energy_setup(args.meters, plan.device, args.energy_preset, args.energy_presets)
    plan.per_batch = [m for m in per_batch if host or m.name.startswith("nvml")]
    plan.per_task = per_task if host else []
    plan.notes.extend(notes)
    for meter in plan.per_batch:
        if args.idle_seconds:
            idle = meter.measure_idle(args.idle_seconds)
            plan.notes.append(f"{meter.source}: idle power {idle:.2f} W over {args.idle_seconds} s (reported beside the raw joules, subtracted in 'above idle')"
                              if idle is not None else f"{meter.source}: idle power not measurable")


def _run(plan: EvalPlan, args, lm_class, write_tables) -> int:
    root = plan.root
    _meters(plan, args)
    if plan.rank == 0:
        manifest = read_json(root / "manifest.json")
        manifest["meters"] = [{"source": m.source, "kind": m.kind, "idle_watts": m.idle_watts} for m in plan.per_batch + plan.per_task]
        manifest["meter_notes"] = plan.notes
        atomic_write_json(root / "manifest.json", manifest)
        print(f"run {root}")
        for note in plan.notes:
            print(f"  {note}")
    gen_kwargs = {"max_gen_toks": args.max_gen_toks} if args.max_gen_toks else None
    pending_by_mode = {mode: [t for t in plan.tasks if not finished(root / mode / t.task)] for mode in plan.modes}
    failures = 0
    started = time.perf_counter()
    for mode in plan.modes:
        pending = pending_by_mode[mode]
        if not pending:
            if plan.rank == 0:
                print(f"  {mode}: all {len(plan.tasks)} tasks already done")
            continue
        lm = lm_class(model=plan.loaded, mode=mode, bits=plan.spiking.bits, time_steps=args.time_steps, granularity=args.granularity,
                      calibration_data=CALIBRATION["data"], calibration_tokens=CALIBRATION["tokens"], batch_size=args.batch_size,
                      device=plan.device, max_length=args.max_length)
        accounting = lm.accounting = Accounting(lm.model, meters=plan.per_batch, count_ops=True)
        if plan.rank == 0 and mode != plan.loaded.model.mode:
            atomic_write_json(root / mode / "conversion.json", {"mode": mode, "spiking": lm.model.spiking.to_dict(), "calibration": CALIBRATION})
        for task in pending:
            failures += _run_one(lm, accounting, task, root / mode / task.task, plan, args, mode, gen_kwargs)
        accounting.close()
    for meter in plan.per_task:
        meter.close()
    if plan.rank != 0:
        return 1 if failures else 0
    metrics, _, _ = write_tables(root, plan.loaded.name)
    print(f"\nwrote {root / 'metrics.csv'} ({len(metrics)} rows), cost.csv and energy.csv in {time.perf_counter() - started:.0f} s")
    if failures:
        print(f"{failures} task(s) failed (see their error.json); running the same command again retries only those")
    return 1 if failures else 0


def _run_one(lm, accounting: Accounting, task: SuiteTask, folder: Path, plan: EvalPlan, args, mode: str, gen_kwargs) -> int:
    """Run one task; a failure becomes error.json (the other tasks go on). Returns 1 on failure."""
    if plan.rank == 0:
        print(f"  {mode:<9} {task.task} ({'default' if task.num_fewshot is None else task.num_fewshot}-shot) ...", flush=True)
    try:
        run_task(lm, accounting, task, folder, plan, args, gen_kwargs)
        if plan.rank == 0:
            (folder / "error.json").unlink(missing_ok=True)
        return 0
    except Exception as err:  # one task's crash must not lose the others
        if plan.rank == 0:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / "error.json", {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
            print(f"    failed: {type(err).__name__}: {err} (see {folder / 'error.json'})")
        return 1


def add_parser(commands) -> None:
    p = commands.add_parser("eval", help="run a suite through lm-eval for each mode of a model, with energy and operation counts")
    p.add_argument("--model", required=True, help="registry name (smollm2-135m), checkpoint folder or .gguf file")
    p.add_argument("--modes", default="ann,snn-fused", help="comma-separated execution modes (default ann,snn-fused)")
    p.add_argument("--suite", default=None, help="ppl, mmlu, bbh, arc, gsm8k, lambada, braintransformers, braingpt, demo")
    p.add_argument("--tasks", nargs="*", help="explicit lm-eval tasks instead of a suite, optionally task:shots")
    p.add_argument("--limit", type=int, default=None, help="documents per task (default: all)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--bits", type=int, default=8, help="bit width of the conversion to a spiking mode (2..16)")
    p.add_argument("--time-steps", type=int, default=None, help="time steps T (default: the largest the bit width allows, 2^(bits-1)-1)")
    p.add_argument("--granularity", default="smoothed", choices=["token", "smoothed", "channel", "tensor"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=None, help="context length (default: the model's)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:<index> (default: cuda when available)")
    p.add_argument("--max-gen-toks", type=int, default=None, help="cap generated tokens per answer (a CPU budget; changes scores of long chain-of-thought tasks)")
    p.add_argument("--meters", default="auto", help="auto, none, or a list of nvml,rapl,codecarbon")
    p.add_argument("--idle-seconds", type=float, default=5.0, help="seconds of idle power measured by the counter meters (NVML, RAPL) before the run; 0 skips it")
    p.add_argument("--energy-preset", default="45nm-fp32,45nm-int8", help="synaptic-operation energy presets for the estimates")
    p.add_argument("--energy-presets", default=None, help="TOML file with extra presets")
    p.add_argument("--results", default="results")
    p.add_argument("--run-id", default=None, help="run folder name under --results (default: the model, suite and modes plus a hash of the settings)")
    p.add_argument("--data-dir", default=None)
