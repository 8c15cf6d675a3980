"""Everything ``snnbench eval`` checks before any work, in order of cost, and the plan it makes of it.

Every flag (numbers, modes, bits and T, device, run id, meters, presets), that the tasks exist and
their data sets are built and undamaged, that ``--out`` is writable, that the model loads
with finite weights, and that a conversion's calibration text is there: each a one-line
ValueError naming what to change. Nothing is evaluated here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval.tasks import TaskManager
from lm_eval.tasks._index import Kind

from models.arch.spiking_config import MODES, SpikingConfig
from models.load import LoadedModel, load_model, read_config
from models.spiking.checks import SPIKING_MODES, check_coding
from models.spiking.neuron import coding_neurons
from models.train.distributed import distributed
from tasks import loader
from tasks.datasets import DATASETS, is_present, set_status
from tasks.fetch import data_dir, use_data_dir
from tasks.files import check_writable

from ..devices import check_device
from ..energy import EnergyMeter, EnergyPreset, select_meters
from ..energy.synops import select_presets
from ..runs import read_json
from ..finetuned import TRAIN_ROOT, best_finetuned, check_started_from
from .identity import check_run_id, default_run_id, eval_settings, model_identity
from .options import CALIBRATION, EvalOptions
from .suites import SuiteTask, resolve_suite

METERS = ("nvml", "rapl", "codecarbon")


def check_tasks(tasks: list[SuiteTask]) -> TaskManager:
    """The TaskManager over snnbench's task folder; unknown task names are a one-line error."""
    manager = TaskManager(include_path=str(Path(loader.__file__).parent), include_defaults=False)
    known = set(manager.all_tasks)
    unknown = [t.task for t in tasks if t.task not in known]
    if unknown:
        raise ValueError(f"unknown task {', '.join(repr(u) for u in unknown)}; snnbench tasks start with snnbench_ (e.g. snnbench_arc_easy)")
    return manager


def _leaf_configs(manager: TaskManager, name: str, seen: set[str]) -> list[dict[str, Any]]:
    """The configs of the leaf tasks under a task, group or tag name of ``manager``'s index."""
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


def required_data_sets(manager: TaskManager, tasks: list[SuiteTask]) -> dict[str, str]:
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
    root = data_dir()
    unusable = {name: set_status(DATASETS[name], root) for name in needed if name in DATASETS}
    unusable = {name: status for name, status in unusable.items() if not status.present}
    unknown = [name for name in needed if name not in DATASETS]
    if unknown:
        raise ValueError(f"{needed[unknown[0]]} reads data set '{unknown[0]}', which snnbench does not know; known: {', '.join(DATASETS)}")
    if unusable:
        first, status = next(iter(unusable.items()))
        raise ValueError(f"{needed[first]} needs data set '{first}', which is {status.state}: {status.reason}; "
                         f"run `snnbench data fetch {' '.join(unusable)}`")


def check_numbers(options: EvalOptions) -> None:
    """The numeric settings, each a one-line error naming its flag."""
    for flag, value, low in (("--limit", options.limit, 1), ("--max-length", options.max_length, 1), ("--max-gen-toks", options.max_gen_toks, 1),
                             ("--batch-size", options.batch_size, 1), ("--idle-seconds", options.idle_seconds, 0)):
        if value is not None and value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}" + (" (or left out for the whole test set)" if flag == "--limit" else ""))


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise ValueError(f"--modes must list some of {', '.join(MODES)}, got {text!r}")
    return list(dict.fromkeys(modes))


def spiking_settings(options: EvalOptions) -> SpikingConfig:
    """The conversion settings (bits, T, granularity) and the spike coding of the spiking modes, validated now rather
    than at the first spiking task."""
    coding = check_coding(options.coding, "--coding")
    try:
        return SpikingConfig(mode="snn-fused", bits=options.bits, time_steps=options.time_steps,
                             linear_granularity=options.granularity, norm_granularity=options.granularity, coding=coding)
    except ValueError as err:
        raise ValueError(f"--bits/--time-steps: {err}") from None


def check_meters(meter_kinds: str) -> list[str] | None:
    """``--meters``: None for auto, else the meter names (a one-line error for unknown ones)."""
    if meter_kinds == "auto":
        return None
    kinds = [] if meter_kinds == "none" else [k.strip() for k in meter_kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in METERS]
    if unknown:
        raise ValueError(f"--meters: unknown meter {unknown[0]!r}; give auto, none, or a list of nvml,rapl,codecarbon")
    return kinds


def check_presets(preset_names: str, presets_file: str | None) -> list[EnergyPreset]:
    """The named energy presets (and a user's preset file), or a one-line error listing the known ones."""
    return select_presets(preset_names, presets_file)


def energy_setup(meter_kinds: str, device: str, preset_names: str, presets_file: str | None) -> tuple[list[EnergyMeter], list[EnergyMeter], list[EnergyPreset], list[str]]:
    """(per-forward meters, per-task meters, presets, notes)."""
    kinds = check_meters(meter_kinds)
    # Counter meters are read around every forward; their deltas add up over many short forwards,
    # so no forward is too short for them (CodeCarbon samples, so it is read once per task).
    meters, notes = select_meters(device, kinds, options={"nvml": {"min_seconds": 0}, "rapl": {"min_seconds": 0}})
    per_task = [m for m in meters if m.name == "codecarbon"]
    per_forward = [m for m in meters if m.name != "codecarbon"]
    return per_forward, per_task, check_presets(preset_names, presets_file), notes


def finished(folder: Path) -> bool:
    """Whether the task in ``folder`` finished: its cost.json exists and is a cost record."""
    path = folder / "cost.json"
    if not path.exists():
        return False
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("total"), dict) or not isinstance(record.get("subtasks"), dict):
        raise ValueError(f"{path}: not a cost record (damaged?); delete it to run that task again")
    return True


@dataclass
class EvalPlan:
    """Everything ``snnbench eval`` checked before starting: what to run, where, and how to measure it."""

    loaded: LoadedModel
    modes: list[str]
    tasks: list[SuiteTask]
    manager: TaskManager
    spiking: SpikingConfig
    device: str
    presets: list[EnergyPreset]
    settings: dict[str, Any]
    root: Path
    rank: int = 0
    world: int = 1
    per_forward: list[EnergyMeter] = field(default_factory=list)
    per_task: list[EnergyMeter] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    spiking_source: LoadedModel | None = None  # --snn-from: the fine-tuned model the spiking modes run


def plan_eval(options: EvalOptions) -> EvalPlan:
    """Check every setting and input, in order of cost; nothing is evaluated here."""
    use_data_dir(options.data_dir)
    check_numbers(options)
    modes = parse_modes(options.modes)
    spiking = spiking_settings(options)
    device = check_device(options.device)
    if options.run_id is not None:
        check_run_id(options.run_id)
    check_meters(options.meters)
    presets = check_presets(options.energy_presets, options.energy_presets_file)
    tasks = resolve_suite(options.suite, options.tasks)
    manager = check_tasks(tasks)
    check_data_sets(required_data_sets(manager, tasks))
    check_writable(options.out, "--out")
    loaded = load_model(options.model)  # checks the files, the config and that every weight is finite
    if loaded.tokenizer is None:
        raise ValueError(f"model {options.model!r} has no tokenizer; lm-eval needs one")
    base_mode = loaded.model.mode
    if base_mode != "ann" and "ann" in modes:
        raise ValueError(f"model {options.model!r} is a converted model in mode {base_mode}; it runs as qat, snn or snn-fused, not ann "
                         "(evaluate the float model it came from for the ANN)")
    identity = model_identity(loaded.source, loaded.name)
    spiking_source, source_note = snn_source(options, loaded, identity, modes)
    converts = base_mode == "ann" and spiking_source is None and any(m != "ann" for m in modes)
    if converts and not is_present(DATASETS[CALIBRATION["data"]], data_dir()):
        raise ValueError(f"converting to a spiking mode calibrates on '{CALIBRATION['data']}', which is not built; "
                         f"run `snnbench data fetch {CALIBRATION['data']}`")
    rank, world = distributed()
    if world > 1 and device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if any(m in SPIKING_MODES for m in modes):  # a model after stage 3 cannot take a bitwise or multilevel coding
        coding_neurons((spiking_source or loaded).model, spiking.coding)
    if spiking_source is not None:
        spiking = spiking_source.model.spiking.with_mode("snn-fused", coding=spiking.coding)
    settings = eval_settings(options, identity, modes, tasks, spiking, base_mode, device, presets)
    if spiking_source is not None:
        settings["conversion"] = None
        settings["snn_from"] = {**model_identity(spiking_source.source, spiking_source.name), "bits": spiking.bits, "time_steps": spiking.T}
    run_id = options.run_id or default_run_id(f"{loaded.name}__{options.suite or '+'.join(t.task for t in tasks)}__{'-'.join(modes)}", settings)
    plan = EvalPlan(loaded, modes, tasks, manager, spiking, device, presets, settings, Path(options.out) / run_id, rank, world,
                    spiking_source=spiking_source)
    plan.notes.append(f"model {identity['path']} (sha256 {identity['sha256'][:12]})")
    if source_note:
        plan.notes.append(source_note)
    return plan


def snn_source(options: EvalOptions, loaded: LoadedModel, identity: dict[str, str], modes: list[str]) -> tuple[LoadedModel | None, str | None]:
    """The fine-tuned checkpoint the spiking modes run (``--snn-from``), checked to come from ``--model``, and a note saying
    where the spiking modes come from; (None, note) when they come from a calibrated conversion."""
    if options.snn_from in (None, "none") or all(m == "ann" for m in modes):
        return None, None
    if loaded.model.mode != "ann":
        raise ValueError(f"--snn-from needs the float model as --model; {options.model!r} is in mode {loaded.model.mode}")
    if options.snn_from == "auto":
        best = best_finetuned(identity, options.bits)
        if best is None:
            return None, (f"spiking modes: calibrated conversion at {options.bits} bits (no finished fine-tuning of {loaded.name} at "
                          f"{options.bits} bits in {TRAIN_ROOT}; snnbench train --init {options.model} --bits {options.bits} makes one)")
        path = best.checkpoint
    else:
        path = Path(options.snn_from)
    source = load_model(str(path))
    if source.model.mode == "ann":
        raise ValueError(f"--snn-from {path}: a float model; give the checkpoint of a snnbench train --init run (mode qat)")
    check_started_from(path, read_config(Path(source.source)) if Path(source.source).is_dir() else {}, identity, options.model)
    return source, f"spiking modes: the fine-tuned checkpoint {path} ({source.model.spiking.bits} bits, T={source.model.spiking.T}), not a calibrated conversion"
