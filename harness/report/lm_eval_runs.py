"""lm-eval output folders as extra runs of a report: any lm-eval baseline (its ``hf`` model, say) beside snnbench's modes.

``lm_eval --output_path OUT --log_samples`` writes ``OUT/<sanitized model name>/results_<date>.json`` and, per task,
``samples_<task>_<date>.jsonl`` beside it. The report accepts ``OUT`` (one run per model subfolder), a model subfolder,
or one results file. Per model folder only the newest results file is read (files of other settings are never merged);
the samples of the same date give the per-document outcomes, so each snnbench mode can be compared with the baseline
document by document on the tasks whose documents, targets and prompts are the same on both sides.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from models.load import MODEL_REGISTRY
from tasks.datasets import verified_file
from tasks.fetch import data_dir

from ..evaluation.tables import metric_rows
from ..paired.compare import KEYS, compare_outcomes
from ..paired.documents import Encode, model_encoder, outcome, read_outcomes
from .results import Results

DATE = re.compile(r"_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)$")
CHECKS = (("doc_hash", "document text"), ("target_hash", "target"), ("prompt_hash", "prompt (few-shot examples or template)"))


@dataclass
class LmEvalRun:
    """One lm-eval results file, read as one run (one model, one mode ``lm-eval:<model source>``)."""

    run: str
    file: Path
    results: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.results.get("config") or {}

    @property
    def date(self) -> str:
        match = DATE.search(self.file.stem)
        return match.group(1) if match else ""

    @property
    def mode(self) -> str:
        """``lm-eval:<model>``; snnbench's adapter run through lm-eval also names its mode (``lm-eval:snnbench/snn-fused``)."""
        source = self.results.get("model_source") or self.config.get("model") or "model"
        mode = self.model_args.get("mode") if source == "snnbench" else None
        return f"lm-eval:{source}" + (f"/{mode}" if mode else "")

    @property
    def model_args(self) -> dict[str, Any]:
        args = self.config.get("model_args") or {}
        if isinstance(args, str):
            return dict(part.split("=", 1) for part in args.split(",") if "=" in part)
        return dict(args) if isinstance(args, dict) else {}

    @property
    def model(self) -> str:
        """The model's name: lm-eval's ``model_name`` (a local folder by its last part), else its source."""
        args = self.model_args
        name = str(self.results.get("model_name") or args.get("pretrained") or args.get("model") or self.config.get("model") or "?")
        return Path(name).name if name.startswith(("/", ".", "~")) else name

    def samples(self, task: str) -> Path:
        """The per-document file lm-eval wrote for ``task`` with this results file."""
        return self.file.parent / f"samples_{task}_{self.date}.jsonl"

    def suite(self, task: str) -> str:
        """The top-level group holding ``task`` (itself when it is in none)."""
        parents = {m: g for g, members in (self.results.get("group_subtasks") or {}).items() for m in members if m != g}
        while task in parents:
            task = parents[task]
        return task


def results_files(folder: Path) -> list[Path]:
    """``results_*.json`` of ``folder``, oldest first (lm-eval's file names sort by date)."""
    return sorted(folder.glob("results_*.json"))


def is_output(path: Path) -> bool:
    """Whether ``path`` is an lm-eval results file, a model folder holding one, or an output folder of model folders."""
    if path.is_file():
        return path.suffix == ".json"
    return bool(results_files(path)) or any(results_files(child) for child in path.iterdir() if child.is_dir())


def _load(file: Path, run: str) -> LmEvalRun:
    """One results file; a one-line ``ValueError`` when it is not lm-eval's results."""
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{file}: unreadable lm-eval results ({type(err).__name__}: {err}); skipped") from None
    if not isinstance(results, dict) or not isinstance(results.get("results"), dict) or not isinstance(results.get("config"), dict):
        raise ValueError(f"{file}: not lm-eval results (no 'results' and 'config' tables); skipped")
    return LmEvalRun(run, file, results)


def _choices(path: Path) -> list[tuple[str, Path, list[Path]]]:
    """(run name, results file to read, results files not read) for a given file, model folder or output folder."""
    if path.is_file():
        return [(f"{path.parent.name}/{path.stem}", path, [])]
    own = results_files(path)
    if own:
        return [(path.name, own[-1], own[:-1])]
    models = [child for child in sorted(path.iterdir()) if child.is_dir() and results_files(child)]
    return [(path.name if len(models) == 1 else f"{path.name}/{child.name}", results_files(child)[-1], results_files(child)[:-1]) for child in models]


def read_output(path: Path, results: Results) -> list[LmEvalRun]:
    """The lm-eval runs under ``path`` added to ``results`` (metrics, settings); each unreadable file becomes a note."""
    runs = []
    for name, file, older in _choices(path):
        while name in results.manifests or name in results.baselines:
            name += "'"
        try:
            run = _load(file, name)
            frame = pd.DataFrame(metric_rows(run.results, {"model": run.model, "mode": run.mode, "suite_task": ""}))
        except ValueError as err:
            results.notes.append(str(err))
            continue
        if frame.empty:
            results.notes.append(f"{file}: lm-eval results with no metric; skipped")
            continue
        frame["suite_task"] = frame["task"].map(run.suite)
        frame.insert(0, "run", name)
        results.metrics.append(frame)
        results.baselines[name] = settings_row(run)
        if older:
            results.notes.append(f"{name}: read {file.name}, the newest of {len(older) + 1} lm-eval results files; the older ones "
                                 "(other runs, perhaps other settings) are not merged in: give one as a file to report it instead")
        runs.append(run)
    return runs


def settings_row(run: LmEvalRun) -> dict[str, Any]:
    """The run's row of the report's settings table, in the columns of an snnbench run's."""
    config, args = run.config, run.model_args
    sha = str(config.get("model_sha") or "")
    shots = run.results.get("n-shot") or {}
    suites = {run.suite(task) for task in run.results.get("configs") or shots}
    return {"run": run.run, "model": f"{run.model} ({sha[:12]})" if sha else run.model, "modes": run.mode, "tasks": len(suites),
            "limit": config.get("limit"), "max_length": args.get("max_length"), "batch_size": config.get("batch_size"),
            "device": f"{config.get('device')} (asked of lm-eval)" if config.get("device") else None,
            "num_fewshot": ", ".join(f"{task}:{n}" for task, n in sorted(shots.items())), "model_args": ",".join(f"{k}={v}" for k, v in args.items()),
            "lm_eval": run.results.get("lm_eval_version"), "date": (run.date[:10] + " " + run.date[11:19].replace("-", ":")) if run.date else None,
            "read_from": f"{run.file.parent.name}/{run.file.name}"}


def _unsanitized(sample: dict[str, Any], output_type: str | None) -> dict[str, Any]:
    """A sample as lm-eval logged it in memory: the file's ``gen_args_i``/``arg_j`` arguments as lists and its
    stringified log-likelihoods as numbers again (``EvaluationTracker.save_results_samples`` undone)."""
    arguments = sample.get("arguments")
    if isinstance(arguments, dict):
        arguments = [[arg[f"arg_{j}"] for j in range(len(arg))] for arg in (arguments[f"gen_args_{i}"] for i in range(len(arguments)))]
    resps = sample["filtered_resps"]
    if output_type in ("loglikelihood", "multiple_choice"):
        resps = [[float(r[0]), r[1] in (True, "True")] for r in resps]
    elif output_type == "loglikelihood_rolling":
        resps = [float(r) for r in resps]
    return {**sample, "arguments": arguments, "filtered_resps": resps}


def outcomes(run: LmEvalRun, tasks: set[str], encode: Encode) -> pd.DataFrame:
    """Per-document outcomes (``harness.paired.documents``) of ``run`` on those of ``tasks`` it has samples for."""
    rows = []
    for task in sorted(tasks):
        path = run.samples(task)
        if not path.exists():
            continue
        output_type = ((run.results.get("configs") or {}).get(task) or {}).get("output_type")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                sample = _unsanitized(json.loads(line), output_type)
                rows.append({"suite_task": run.suite(task), **outcome({**sample, "task": task}, encode)})
            except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as err:
                raise ValueError(f"{path}, line {number}: not an lm-eval sample ({type(err).__name__}: {err})") from None
    return pd.DataFrame(rows)


def same_documents(reference: pd.DataFrame, candidate: pd.DataFrame, label: str) -> tuple[set[str], list[str]]:
    """Tasks whose shared documents differ (text, target or prompt) between the two sides, and a note for each."""
    merged = reference.merge(candidate, on=KEYS, suffixes=("_ref", "_cand"))
    refused, notes = set(), []
    for task, docs in merged.groupby("task", sort=True):
        for column, what in CHECKS:
            ref, cand = docs[f"{column}_ref"], docs[f"{column}_cand"]
            differ = docs[ref.isna() | cand.isna() | (ref != cand)]
            if len(differ):
                refused.add(task)
                notes.append(f"{label}: {task} not compared document by document: document {differ.iloc[0]['doc_id']} has another {what} "
                             "on each side (paired comparison needs the same documents)")
                break
    return refused, notes


def tokenizer_encoder(run: LmEvalRun) -> Encode | None:
    """The baseline model's tokenizer: an snnbench registry name's or ``.gguf`` file's, a local folder's, or the Hugging Face
    cache's ``tokenizer.json``; None when it is not on this machine."""
    name = str(run.model_args.get("tokenizer") or run.model_args.get("pretrained") or "")
    if not name:
        return None
    try:
        if name in MODEL_REGISTRY:
            return model_encoder(verified_file(data_dir(), *MODEL_REGISTRY[name]))
        if Path(name).is_dir() or Path(name).suffix == ".gguf":
            return model_encoder(name)
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "tokenizer.json", revision=run.model_args.get("revision"))
        return model_encoder(Path(cached).parent) if isinstance(cached, str) else None
    except (ImportError, OSError, ValueError):  # ModelLoadError and DataNotFoundError are ValueErrors
        return None


def _no_tokens(text: str) -> list[int]:
    """The candidate side's token counts are never used (per-token figures divide by the reference's, the baseline's)."""
    return []


def pair_baselines(baselines: list[LmEvalRun], eval_runs: dict[str, Path], results: Results) -> None:
    """Every mode of every snnbench run against every lm-eval baseline, document by document, into ``results.paired``."""
    if not baselines:
        return
    sides = {}
    for name, folder in eval_runs.items():
        try:
            sides[name] = {mode: read_outcomes(folder / mode, _no_tokens) for mode in results.manifests[name].get("modes", [])}
        except (ValueError, KeyError, TypeError) as err:
            results.notes.append(f"{name}: no document-by-document comparison with lm-eval runs ({type(err).__name__}: {err})")
    for base in baselines:
        for name, modes in sides.items():
            tasks = {t for frame in modes.values() if not frame.empty for t in frame["task"]}
            if tasks:
                _pair(base, name, modes, tasks, results)


def _pair(base: LmEvalRun, name: str, modes: dict[str, pd.DataFrame], tasks: set[str], results: Results) -> None:
    """``name``'s modes against ``base`` on their shared tasks; notes say what could not be compared and why."""
    shared = tasks & set(base.results.get("configs") or {})
    if not shared:
        results.notes.append(f"{base.run} and {name} share no task, so nothing is compared (lm-eval's own tasks are not snnbench's: "
                             "give lm-eval --include_path tasks and the snnbench_* tasks)")
        return
    missing = sorted(t for t in shared if not base.samples(t).exists())
    if missing:
        results.notes.append(f"{base.run}: no samples for {', '.join(missing)} (lm-eval's --log_samples): compared with {name} by metrics only")
    encode = tokenizer_encoder(base) if len(missing) < len(shared) else None
    if encode is None and len(missing) < len(shared):
        results.notes.append(f"{base.run} vs {name}: no document-by-document comparison: the tokenizer of {base.model} is not on this "
                             "machine (its tokenizer.json counts the tokens of the per-token figures)")
    if encode is None:
        return
    try:
        reference = outcomes(base, shared, encode)
        for mode, candidate in modes.items():
            _pair_mode(reference, candidate, f"{base.mode} ({base.run})", name, mode, results)
    except ValueError as err:
        results.notes.append(f"{base.run} vs {name}: no document-by-document comparison ({err})")


def _pair_mode(reference: pd.DataFrame, candidate: pd.DataFrame, label: str, name: str, mode: str, results: Results) -> None:
    """One mode of run ``name`` against the baseline ``label`` on the tasks whose documents are the same on both sides."""
    if reference.empty or candidate.empty:
        return
    refused, notes = same_documents(reference, candidate, f"{name}: {mode} vs {label}")
    results.notes.extend(notes)
    rows = compare_outcomes(reference[~reference["task"].isin(refused)], candidate[~candidate["task"].isin(refused)])
    if rows.empty:
        results.notes.append(f"{name}: {mode} and {label} share no document to compare (same tasks, ids, texts, targets and prompts needed)")
        return
    rows.insert(0, "reference", label)
    rows.insert(1, "candidate", mode)
    results.paired.append(rows.assign(run=name))
