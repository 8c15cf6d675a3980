"""``snnbench report``: result folders -> ``reports/<name>/`` (report.md, report.html, tables/*.csv, plots/*.png).

The markdown and CSV files are a function of the results alone (no dates, sorted rows, fixed
float formatting), so the same folders give byte-identical reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tasks.files import atomic_write_text, check_writable

from ..energy.synops import operator_kind
from . import plots
from .collect import Results, read
from .fidelity import fidelity_blocks
from .render import Block, to_html, to_markdown

CSV_FLOAT = "%.6g"


def _machine(results: Results) -> str:
    for manifest in results.manifests.values():
        m = manifest.get("machine", {})
        gpus = ", ".join(m.get("gpus", [])) or "no GPU"
        return f"{m.get('processor', '?')}, {m.get('cpu_count', '?')} cores, {m.get('memory_gib', '?')} GiB, {gpus}"
    return "not recorded"


def _presets(results: Results) -> str:
    for manifest in results.manifests.values():
        presets = ((manifest.get("settings") or {}).get("energy") or {}).get("presets") or manifest.get("energy_presets", [])
        names = [p["name"] for p in presets]
        if names:
            return names[0]
    return "the run's first preset"


def _figure(blocks: list[Block], out: Path, name: str, draw: Callable[[Path], str | None], lead: str = "") -> None:
    """Draw ``plots/<name>.png`` with ``draw(path)`` (its caption, None when there is nothing to plot) and add it to the blocks."""
    caption = draw(out / "plots" / f"{name}.png")
    if caption:
        blocks.append(("figure", f"plots/{name}.png", lead + caption))


def _write_table(out: Path, name: str, frame: pd.DataFrame, tables: dict[str, str]) -> None:
    path = out / "tables" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, frame.to_csv(index=False, float_format=CSV_FLOAT))
    tables[name] = f"tables/{name}.csv"


SETTING_COLUMNS = ("model", "modes", "bits", "time_steps", "granularity", "tasks", "limit", "max_length", "max_gen_toks", "batch_size", "device")
BASELINE_COLUMNS = ("num_fewshot", "model_args", "lm_eval", "date", "read_from")  # shown when lm-eval runs are reported too


def _baseline_columns(manifest: dict) -> dict:
    """An snnbench run's values of the columns lm-eval runs add to the settings table."""
    tasks = (manifest.get("settings") or {}).get("tasks", manifest.get("tasks", []))
    return {"num_fewshot": ", ".join(f"{t['task']}:{t.get('num_fewshot') or 0}" for t in sorted(tasks, key=lambda t: t["task"])),
            "lm_eval": (manifest.get("versions") or {}).get("lm_eval"), "date": str(manifest.get("started_at") or "")[:19].replace("T", " ") or None}


def _run_settings(results: Results) -> pd.DataFrame:
    """One row per run: the settings that make it that run (from an eval run's manifest or an lm-eval results file)."""
    rows = []
    for run, manifest in sorted(results.manifests.items()):
        settings = manifest.get("settings") or {}
        model = settings.get("model") or {}
        conversion = settings.get("conversion") or {}
        rows.append({"run": run, "model": f"{model.get('name', '?')} ({str(model.get('sha256', ''))[:12]})", "modes": ",".join(settings.get("modes", manifest.get("modes", []))),
                     "bits": conversion.get("bits"), "time_steps": conversion.get("time_steps"), "granularity": conversion.get("granularity"),
                     "tasks": len(settings.get("tasks", manifest.get("tasks", []))), "limit": settings.get("limit"), "max_length": settings.get("max_length"),
                     "max_gen_toks": settings.get("max_gen_toks"), "batch_size": settings.get("batch_size"), "device": settings.get("device"),
                     **(_baseline_columns(manifest) if results.baselines else {})})
    rows += [row for _, row in sorted(results.baselines.items())]
    columns = ("run", *SETTING_COLUMNS, *(BASELINE_COLUMNS if results.baselines else ()))
    return pd.DataFrame(rows, columns=list(columns))


def _column_label(frame: pd.DataFrame) -> pd.Series:
    """``mode`` when one run is reported, ``run: mode`` when several: runs are never averaged together."""
    if frame["run"].nunique() > 1:
        return frame["run"].astype(str) + ": " + frame["mode"].astype(str)
    return frame["mode"].astype(str)


def side_by_side(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every metric with the runs' modes as columns: value, then its standard error, then the documents (one column per
    run and mode where they differ). Several models (an lm-eval baseline, say) share rows: the columns name the runs."""
    frame = metrics.assign(column=_column_label(metrics))
    index = ["model", "task", "metric", "filter"] if frame["model"].nunique() == 1 else ["task", "metric", "filter"]
    values = frame.pivot_table(index=index, columns="column", values="value", aggfunc="first")
    errors = frame.pivot_table(index=index, columns="column", values="stderr", aggfunc="first", dropna=False) if "stderr" in frame else None
    out = pd.DataFrame(index=values.index)
    for column in values.columns:
        out[column] = values[column]
        if errors is not None and column in errors:
            out[f"{column} stderr"] = errors[column]
    if "documents" in frame:
        documents = frame.pivot_table(index=index, columns="column", values="documents", aggfunc="max")
        if (documents.nunique(axis=1) <= 1).all():
            out["documents"] = documents.max(axis=1)
        else:
            for column in documents.columns:
                out[f"{column} documents"] = documents[column]
    out = out.reset_index()
    out.columns.name = None
    return out.sort_values(index).reset_index(drop=True)


def cost_table(cost: pd.DataFrame) -> pd.DataFrame:
    """Per run x mode x task: tokens, seconds, counted operations and one column per energy source,
    measured and estimated in separate columns that name their source; a task's cost is summed over its leaf tasks."""
    keys = ["run", "model", "mode", "suite_task"]
    timed = cost[cost["quantity"] == "seconds"].groupby(keys)[["tokens", "value"]].sum().rename(columns={"value": "seconds"})
    counted = cost[cost["kind"] == "counted"].pivot_table(index=keys, columns="quantity", values="value", aggfunc="sum")
    counted = counted[[c for c in ("spikes", "Effective_ACs", "Effective_MACs", "float_ops") if c in counted]]
    energy = cost[cost["unit"] == "J"].assign(column=lambda f: f["kind"] + " J, " + f["source"] + f["quantity"].map(lambda q: "" if q == "energy" else f" ({q})"))
    joules = energy.pivot_table(index=keys, columns="column", values="value", aggfunc="sum", dropna=False)
    table = timed.join(counted).join(joules).reset_index().rename(columns={"suite_task": "task"})
    table.columns.name = None
    return table.sort_values(["model", "task", "run", "mode"]).reset_index(drop=True)


SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def readable_counts(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """For display: each count column in one SI unit chosen by its largest value ("Effective_MACs (G)": 326.5)."""
    out = table.copy()
    for column in columns:
        largest = out[column].abs().max()
        scale, prefix = next(((v, p) for v, p in SI_PREFIXES if largest >= v), (1.0, ""))
        if prefix:
            out[column] = (out[column] / scale).map(lambda v: float(f"{v:.4g}"))
            out = out.rename(columns={column: f"{column} ({prefix})"})
    return out


def per_token_millijoules(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """For display: energy columns in millijoules per token ("estimated J, x" -> "estimated mJ/token, x")."""
    out = table.copy()
    for column in columns:
        out[column] = (1000 * out[column] / out["tokens"].where(out["tokens"] > 0)).map(lambda v: float(f"{v:.4g}"))
    return out.rename(columns={c: c.replace(" J,", " mJ/token,", 1) for c in columns})


def ranges_in_one_column(table: pd.DataFrame) -> pd.DataFrame:
    """For display: a ranged estimate's three columns (middle, low end, high end) as one "low-high" column."""
    out = table.copy()
    for low in [c for c in table.columns if c.endswith(" (energy, low end)")]:
        base, high = low[: -len(" (energy, low end)")], low.replace("low end", "high end")
        if base in out and high in out:
            out[base] = [f"{lo:.4g}-{hi:.4g}" if pd.notna(lo) and pd.notna(hi) else "" for lo, hi in zip(out[low], out[high])]
            out = out.drop(columns=[low, high]).rename(columns={base: f"{base} (low-high)"})
    return out


def _evaluation(results: Results, out: Path, blocks: list[Block], tables: dict[str, str]) -> None:
    metrics = results.metrics_frame()
    if metrics.empty:
        return
    blocks.append(("h2", "Evaluation (lm-eval)"))
    runs = _run_settings(results)
    if len(runs):
        blocks.append(("p", "The runs and the settings that make each one (results of different settings are never averaged together):"))
        blocks.append(("table", runs))
        _write_table(out, "runs", runs, tables)
    if results.baselines:
        blocks.append(("p", "Runs of mode lm-eval:<model> were read from lm-eval output folders (the file named in read_from): their metrics stand "
                            "beside snnbench's, with no cost figures. Documents are compared one by one only where both sides logged samples "
                            "of the same documents, targets and prompts (same task, doc_id, few-shot examples)."))
    keep = ["run", "model", "mode", "task", "metric", "filter", "value", "stderr", "documents"]
    table = metrics[[c for c in keep if c in metrics]].sort_values(["run", "task", "metric", "filter", "mode"]).reset_index(drop=True)
    _write_table(out, "metrics", table, tables)
    side = side_by_side(metrics)
    blocks.append(("p", "Every task's metrics, the execution modes side by side, each with lm-eval's standard error and the number of documents:"))
    blocks.append(("table", side))
    _write_table(out, "metrics_side_by_side", side, tables)
    cost = results.cost_frame()
    if not cost.empty:
        table = cost_table(cost)
        keys = ["run", "mode", "task", "tokens"] if table["model"].nunique() == 1 else ["run", "model", "mode", "task", "tokens"]
        counted = [c for c in ("seconds", "spikes", "Effective_ACs", "Effective_MACs", "float_ops") if c in table]
        blocks.append(("p", "What each task cost, per mode: time of the model forwards and the counted operations "
                            "(in the unit each column names; exact counts in tables/cost_by_task.csv)."))
        blocks.append(("table", readable_counts(table[keys + counted], [c for c in counted if c != "seconds"])))
        joules = [c for c in table.columns if c not in keys and c not in counted and c != "model"]
        blocks.append(("p", "Its energy per token, in millijoules. Measured joules come from a meter (raw, and above the idle power where it was measured), "
                            "estimated joules from counted operations under a preset (arithmetic only, or with memory traffic as a low-high range) or from "
                            "CodeCarbon's TDP fallback; each column names its kind and "
                            "source (totals in joules in tables/cost_by_task.csv)."))
        blocks.append(("table", ranges_in_one_column(per_token_millijoules(table[keys + joules], joules))))
        _write_table(out, "cost", cost.sort_values(["run", "model", "mode", "suite_task", "task", "kind", "source", "quantity"]).reset_index(drop=True), tables)
        _write_table(out, "cost_by_task", table, tables)
    energy = results.energy_frame()
    if not energy.empty:
        _write_table(out, "energy", energy.sort_values(["run", "model", "mode", "task", "kind", "source"]).reset_index(drop=True), tables)
    _figure(blocks, out, "energy_per_mode", lambda path: plots.energy_per_mode(energy, path, _machine(results)))
    _figure(blocks, out, "quality_vs_energy", lambda path: plots.pareto(metrics, energy, path, _presets(results)))


def _synops(folders: list[Path], out: Path, blocks: list[Block], tables: dict[str, str], preset_name: str) -> None:
    """Counted operations per token by operator kind, one table and plot per run and mode (never pooled across runs)."""
    rows, tokens = [], {}
    for folder in folders:
        for path in sorted(folder.glob("*/*/ops_by_module.json")):
            key = (folder.name, path.parent.parent.name)
            cost = json.loads((path.parent / "cost.json").read_text()) if (path.parent / "cost.json").exists() else {}
            total = cost.get("total") if isinstance(cost, dict) else None
            tokens[key] = tokens.get(key, 0) + ((total.get("tokens") if isinstance(total, dict) else 0) or 0)
            for name, stats in json.loads(path.read_text()).items():
                rows.append({"run": key[0], "mode": key[1], "kind": operator_kind(name),
                             **{k: stats.get(k, 0) for k in ("Effective_ACs", "Effective_MACs", "float_ops")}})
    if not rows:
        return
    frame = pd.DataFrame(rows)
    several = frame["run"].nunique() > 1
    for (run, mode), part in sorted(frame.groupby(["run", "mode"])):
        by_kind = (part.groupby("kind")[["Effective_ACs", "Effective_MACs", "float_ops"]].sum() / (tokens[(run, mode)] or 1)).sort_index()
        name = f"synops_by_kind_{run}_{mode}" if several else f"synops_by_kind_{mode}"
        _write_table(out, name, by_kind.reset_index(), tables)
        _figure(blocks, out, name, lambda path: plots.synops_by_kind(by_kind, path, preset_name), f"Run {run}, mode {mode}. " if several else f"Mode {mode}. ")


def _training(results: Results, out: Path, blocks: list[Block], tables: dict[str, str]) -> None:
    if not results.training:
        return
    blocks.append(("h2", "Training (stage 1)"))
    keys = ("arch", "mode", "parameters", "steps", "test_perplexity", "snn_fused_test_perplexity", "tokens_per_second", "train_seconds")
    table = pd.DataFrame([{"run": name, **{k: summary.get(k) for k in keys}} for name, (summary, _) in sorted(results.training.items())])
    blocks.append(("table", table))
    _write_table(out, "training", table, tables)
    _figure(blocks, out, "convergence", lambda path: plots.convergence({name: log for name, (_, log) in results.training.items()}, path))


def _conversions(results: Results, out: Path, blocks: list[Block], tables: dict[str, str]) -> None:
    if not results.conversions:
        return
    blocks.append(("h2", "Conversion (stage 2)"))
    rows = []
    for name, (summary, audit) in sorted(results.conversions.items()):
        ppl = summary.get("perplexity", {})
        rows.append({"conversion": name, "model": summary.get("model"), "bits": summary.get("spiking", {}).get("bits"),
                     "ann_perplexity": ppl.get("ann", {}).get("perplexity"), "qat_perplexity": ppl.get("qat", {}).get("perplexity"),
                     "snn_perplexity": ppl.get("snn-fused", {}).get("perplexity"), "snn_vs_ann": summary.get("snn_vs_ann_perplexity_change"),
                     "qat_equals_snn": summary.get("qat_equals_snn"), "spiking_coverage": summary.get("spiking_coverage")})
        if not audit.empty:
            _write_table(out, f"audit_{name}", audit, tables)
            worst = audit.dropna(subset=["relative_error"]).sort_values("relative_error", ascending=False).head(5)
            blocks.append(("p", f"{name}: the operators with the largest relative error against the float model:"))
            blocks.append(("table", worst[["name", "kind", "time_steps", "clip_rate", "spike_rate", "relative_error"]].reset_index(drop=True)))
            _figure(blocks, out, f"spikes_{name}", lambda path: plots.spike_heatmap(audit, path, name))
    table = pd.DataFrame(rows)
    blocks.append(("p", "Perplexity check of each conversion (ANN, QAT and SNN on the same text):"))
    blocks.append(("table", table))
    _write_table(out, "conversions", table, tables)


def _stdp(results: Results, out: Path, blocks: list[Block], tables: dict[str, str]) -> None:
    if not results.stdp:
        return
    blocks.append(("h2", "STDP-inspired time-step optimization (stage 3)"))
    table = pd.DataFrame([_stdp_row(name, summary) for name, summary in sorted(results.stdp.items())])
    blocks.append(("table", table))
    _write_table(out, "stdp", table, tables)


def _stdp_row(name: str, summary: dict) -> dict:
    """One ``stdp.json`` as a row: T, perplexity and estimated joules per token, before and after."""
    energy = summary["estimated_energy"]
    row = {"run": name}
    for figure, values in (("mean_T", summary["mean_T"]), ("max_T", summary["max_T"]), ("perplexity", summary["perplexity"])):
        row.update({f"{figure}_before": values["before"], f"{figure}_after": values["after"]})
    row.update(J_per_token_before=energy["before"]["joules_per_token"], J_per_token_after=energy["after"]["joules_per_token"],
               energy_source=energy["before"]["source"])
    return row


def _energy_analyses(results: Results, out: Path, blocks: list[Block], tables: dict[str, str]) -> None:
    """Each ``snnbench energy`` folder: the ANN baselines and SNN codings, arithmetic-only and memory-aware (low-high), and the
    break-even plot redrawn from the table."""
    if not results.energy_analyses:
        return
    blocks.append(("h2", "Energy with memory traffic: ANN baselines, spike codings, break-even (estimated)"))
    blocks.append(("p", "Every figure here is an estimate (Horowitz 45 nm arithmetic per precision; memory accesses priced per preset, "
                        "its assumptions listed), never a measurement. Ranges: the preset's low and high prices. Break-evens: the time "
                        "window T and the spike rate at which the SNN costs what the iso-precision integer ANN does."))
    for name, table in sorted(results.energy_analyses.items()):
        bits = int(table["precision"][table["coding"].fillna("") != ""].iloc[0][3:]) if (table["coding"].fillna("") != "").any() else 8
        model = str(table["model"].iloc[0]) if "model" in table else name
        shown = pd.DataFrame({
            **({"phase": table["phase"]} if "phase" in table else {}),
            "preset": table["preset"], "variant": table["variant"],
            "arithmetic mJ/token": (1e3 * table["arithmetic_j_per_token"]).map(lambda v: f"{v:.3g}"),
            "memory-aware mJ/token": [f"{1e3 * lo:.3g}-{1e3 * hi:.3g}" for lo, hi in zip(table["memory_j_per_token_low"], table["memory_j_per_token_high"])],
            "T": table["time_steps"].map(lambda v: "" if pd.isna(v) else f"{v:.0f}"),
            f"verdict vs int{bits}": table.get(f"verdict_vs_int{bits}", pd.Series([""] * len(table))).fillna(""),
        })
        blocks.append(("h3", f"{name}: {model} at {bits} bits"))
        blocks.append(("table", shown))
        _write_table(out, f"energy_analysis_{name}", table, tables)
        _figure(blocks, out, f"breakeven_{name}", lambda path: plots.breakeven(table, path, bits, model))


def _other_tables(results: Results, out: Path, blocks: list[Block], tables: dict[str, str]) -> None:
    if not results.tables:
        return
    blocks.append(("h2", "Other tables"))
    for name, frame in sorted(results.tables.items()):
        safe = name.replace("/", "_")
        blocks.append(("h3", name))
        blocks.append(("table", frame))
        _write_table(out, safe, frame, tables)
        for x in ("time_steps", "bits"):
            _figure(blocks, out, f"sweep_{safe}_{x}", lambda path: plots.sweep(frame, x, path, f"{name}: {x} sweep"))
        if {"step", "valid_perplexity", "model"} <= set(frame.columns):
            curves = {m: part.sort_values("step") for m, part in frame.groupby("model")}
            _figure(blocks, out, f"convergence_{safe}", lambda path: plots.convergence(curves, path))


def write_report(folders: list[str | Path], name: str | None = None, out_root: str | Path = "reports") -> Path:
    """``snnbench report``: the report of ``folders`` in ``out_root/name`` (default name: from the folders), after
    checking the name and that the folder can be written."""
    name = name or "+".join(Path(f).name for f in folders)[:120]
    if not name or name in (".", "..") or "/" in name:
        raise ValueError(f"--name {name!r} is not a plain folder name")
    check_writable(Path(out_root) / name, "--out")
    return build_report(folders, name, out_root)


def build_report(folders: list[str | Path], name: str, out_root: str | Path = "reports", extra_blocks: list[Block] | None = None) -> Path:
    """Write the report of ``folders`` to ``out_root/name``; returns that folder."""
    folders = [Path(f) for f in folders]
    results = read(folders)
    out = Path(out_root) / name
    out.mkdir(parents=True, exist_ok=True)
    tables: dict[str, str] = {}
    blocks: list[Block] = [("h1", f"snnbench report: {name}")]
    blocks.append(("p", "Results from: " + ", ".join(f.name for f in folders) + f". Machine: {_machine(results)}."))
    if results.notes or results.failures:
        blocks.append(("h2", "What is missing"))
        items = list(results.notes) + [f"{f['run']}: {f['mode']} / {f['task']} failed: {f['error']}" for f in results.failures]
        blocks.append(("ul", items))
    blocks.extend(extra_blocks or [])
    paired = results.paired_frame()
    blocks.extend(fidelity_blocks(paired, results.energy_frame(), _presets(results), out))
    if not paired.empty:
        _write_table(out, "paired", paired.sort_values(["run", "reference", "candidate", "level", "suite_task", "task", "filter", "quantity"]).reset_index(drop=True), tables)
    _evaluation(results, out, blocks, tables)
    _synops(folders, out, blocks, tables, _presets(results))
    _training(results, out, blocks, tables)
    _conversions(results, out, blocks, tables)
    _stdp(results, out, blocks, tables)
    _energy_analyses(results, out, blocks, tables)
    _other_tables(results, out, blocks, tables)
    if len(blocks) <= 2 + (2 if results.notes or results.failures else 0):
        blocks.append(("p", "**Note:** none of the given folders held results to report."))
    blocks.append(("p", "Tables as CSV: " + ", ".join(sorted(tables.values())) if tables else "No tables."))
    atomic_write_text(out / "report.md", to_markdown(blocks))
    atomic_write_text(out / "report.html", to_html(blocks, out, f"snnbench report: {name}"))
    return out
