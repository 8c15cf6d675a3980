"""Read result folders of every kind snnbench writes into one ``Results`` object.

Kinds are recognised by the files a folder holds:
- eval run:   manifest.json + metrics.csv (``snnbench eval``)
- train run:  summary.json + log.jsonl (``snnbench train``)
- conversion: convert.json + audit.json (``snnbench convert``)
- stage 3:    stdp.json (``snnbench stdp``)
- energy:     energy-analysis.csv (``snnbench energy``: memory-aware estimates, codings, break-even)
- tables written by ``snnbench neurtransformer``, ``braingpt-ablate``, ``ablate`` and ``bench``;
- lm-eval output: an ``--output_path`` folder, a model folder in it, or one ``results_*.json`` file
  (``lm_eval_runs``): each model's newest results as one more run, compared document by document
  with every snnbench eval run where the documents are the same.
A folder of an unknown or older format, an empty run, or a failed task does not stop a report:
each becomes a note naming what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import lm_eval_runs
from .results import Results


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_eval(folder: Path, results: Results) -> None:
    manifest = _json(folder / "manifest.json")
    run = folder.name
    results.manifests[run] = manifest
    if not isinstance(manifest, dict):
        raise ValueError(f"{folder / 'manifest.json'} is not a run manifest")
    if "settings" not in manifest:
        results.notes.append(f"{run}: made by an older snnbench (no settings recorded); its cost figures are not read")
    tables = (("metrics.csv", results.metrics), ("cost.csv", results.cost), ("energy.csv", results.energy)) if "settings" in manifest else (("metrics.csv", results.metrics),)
    for name, target in tables:
        path = folder / name
        if path.exists() and path.stat().st_size > 1:
            frame = pd.read_csv(path)
            frame.insert(0, "run", run)
            target.append(frame)
        else:
            results.notes.append(f"{run}: no {name} (the run finished no task yet)")
    if (folder / "paired.csv").exists() and (folder / "paired.csv").stat().st_size > 1:
        results.paired.append(pd.read_csv(folder / "paired.csv").assign(run=run))
    for error in sorted(folder.glob("*/*/error.json")):
        mode, task = error.parent.parent.name, error.parent.name
        message = _json(error).get("error", "unknown error").splitlines()[0]
        results.failures.append({"run": run, "mode": mode, "task": task, "error": message})
    expected = {(m, t["task"]) for m in manifest.get("modes", []) for t in manifest.get("tasks", [])}
    done = {(p.parent.parent.name, p.parent.name) for p in folder.glob("*/*/cost.json")}
    failed = {(f["mode"], f["task"]) for f in results.failures if f["run"] == run}
    for mode, task in sorted(expected - done - failed):
        results.notes.append(f"{run}: {mode} / {task} was not run (the run was stopped before it)")


def _read_train(folder: Path, results: Results) -> None:
    summary = _json(folder / "summary.json")
    log = pd.read_json(folder / "log.jsonl", lines=True) if (folder / "log.jsonl").exists() else pd.DataFrame()
    results.training[summary.get("name", folder.name) + f" ({folder.name})"] = (summary, log)


def _read_convert(folder: Path, results: Results) -> None:
    summary = _json(folder / "convert.json")
    audit = pd.DataFrame(_json(folder / "audit.json").get("layers", [])) if (folder / "audit.json").exists() else pd.DataFrame()
    results.conversions[folder.name] = (summary, audit)


def read(folders: list[str | Path]) -> Results:
    results = Results()
    eval_runs: dict[str, Path] = {}
    baselines: list[lm_eval_runs.LmEvalRun] = []
    for raw in folders:
        folder = Path(raw)
        try:
            if folder.is_file() and lm_eval_runs.is_output(folder):
                baselines += lm_eval_runs.read_output(folder, results)
                continue
            if not folder.is_dir():
                results.notes.append(f"{folder}: not a folder; skipped")
                continue
            found = False
            if (folder / "manifest.json").exists():
                _read_eval(folder, results)
                eval_runs[folder.name] = folder
                found = True
            if (folder / "summary.json").exists() and (folder / "log.jsonl").exists():
                _read_train(folder, results)
                found = True
            if (folder / "convert.json").exists():
                _read_convert(folder, results)
                found = True
            if (folder / "stdp.json").exists():
                results.stdp[folder.name] = _json(folder / "stdp.json")
                found = True
            if (folder / "energy-analysis.csv").exists():
                results.energy_analyses[folder.name] = pd.read_csv(folder / "energy-analysis.csv", keep_default_na=False, na_values=[""])
                found = True
            for csv in sorted(folder.glob("*.csv")):
                if csv.name not in ("metrics.csv", "cost.csv", "energy.csv", "paired.csv", "energy-analysis.csv"):
                    results.tables[f"{folder.name}/{csv.stem}"] = pd.read_csv(csv)
                    found = True
            for child in sorted(p for p in folder.iterdir() if p.is_dir()):
                if (child / "stdp.json").exists():
                    results.stdp[f"{folder.name}/{child.name}"] = _json(child / "stdp.json")
                    found = True
            if not found and lm_eval_runs.is_output(folder):
                baselines += lm_eval_runs.read_output(folder, results)
                found = True
            if not found:
                results.notes.append(f"{folder}: no snnbench results recognised (an older or unknown format?); skipped")
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
            results.notes.append(f"{folder}: unreadable ({type(err).__name__}: {err}); skipped")
    lm_eval_runs.pair_baselines(baselines, eval_runs, results)
    return results
