"""The report's figures (matplotlib, Agg). Each function writes one PNG and returns its caption, or None
when the results hold nothing to draw."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PNG_METADATA = {"Software": None}  # no version/date stamps in the files


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_METADATA)
    plt.close(fig)


def _system_labels(frame: pd.DataFrame) -> pd.Series:
    """One label per bar group: model and mode, and the run when several runs are plotted."""
    label = frame["model"].astype(str) + "\n" + frame["mode"].astype(str)
    if "run" in frame and frame["run"].nunique() > 1:
        label = frame["run"].astype(str) + "\n" + label
    return label


def energy_per_mode(energy: pd.DataFrame, path: Path, machine: str) -> str | None:
    """Joules per token by run, model and mode, measured and estimated side by side (never summed, never pooled across runs)."""
    if energy.empty:
        return None
    energy = energy.assign(system=_system_labels(energy))
    groups = energy.groupby(["system", "kind", "source"])["joules_per_token"].agg(["mean", "std", "count"]).reset_index()
    groups = groups[groups["mean"] > 0]
    if groups.empty:
        return None
    systems = sorted(groups["system"].unique())
    sources = sorted({(k, s) for k, s in zip(groups["kind"], groups["source"])})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(systems) + 2), 4.2))
    width = 0.8 / len(sources)
    for i, (kind, source) in enumerate(sources):
        rows = groups[(groups["kind"] == kind) & (groups["source"] == source)].set_index("system")
        values = [float(rows.loc[s, "mean"]) if s in rows.index else np.nan for s in systems]
        errors = [float(rows.loc[s, "std"]) if s in rows.index and rows.loc[s, "count"] > 1 else 0.0 for s in systems]
        x = np.arange(len(systems)) + i * width - 0.4 + width / 2
        ax.bar(x, values, width, yerr=errors, capsize=3, label=f"{kind}: {source}", hatch="//" if kind == "estimated" else None, alpha=0.85)
    ax.set_xticks(np.arange(len(systems)))
    ax.set_xticklabels(systems, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("joules per token (log)")
    ax.legend(fontsize=7)
    save(fig, path)
    return (
        "Energy per token by model and execution mode (and run, when several are reported). Solid bars are measured by a meter, hatched bars are "
        f"estimated (counted synaptic operations x a named preset; memory:<preset> adds memory traffic and is drawn at the middle of its "
        f"low-high range, given in the table; or CodeCarbon's TDP fallback); they are never summed. "
        f"Error bars: standard deviation over the tasks of one run. Machine: {machine}."
    )


def _primary_metric(frame: pd.DataFrame) -> pd.DataFrame:
    """One headline metric per task: accuracy, exact match or word perplexity."""
    preference = ["acc", "exact_match", "word_perplexity", "perplexity"]
    keep = []
    for task, rows in frame.groupby("task"):
        for metric in preference:
            chosen = rows[rows["metric"] == metric]
            if len(chosen):
                keep.append(chosen.sort_values("filter").groupby(["run", "mode"]).head(1))
                break
    return pd.concat(keep) if keep else frame.iloc[0:0]


def pareto(metrics: pd.DataFrame, energy: pd.DataFrame, path: Path, preset: str) -> str | None:
    """Quality against estimated energy per token under ``preset``: one point per task, run and mode."""
    if metrics.empty or energy.empty:
        return None
    priced = energy[(energy["kind"] == "estimated") & (energy["source"] == f"synops:{preset}")]
    per_task = priced.groupby(["run", "mode", "suite_task"])[["joules", "tokens"]].sum().reset_index()
    per_task["j_per_token"] = per_task["joules"] / per_task["tokens"]
    frame = _primary_metric(metrics).merge(per_task[["run", "mode", "suite_task", "j_per_token"]], on=["run", "mode", "suite_task"])
    frame = frame[np.isfinite(frame["j_per_token"]) & (frame["j_per_token"] > 0)]
    if frame.empty:
        return None
    frame = frame.assign(series=_system_labels(frame).str.replace("\n", " ", regex=False))
    kinds = sorted(frame["metric"].unique())
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), squeeze=False)
    for ax, metric in zip(axes[0], kinds):
        rows = frame[frame["metric"] == metric]
        for series, part in rows.groupby("series"):
            ax.scatter(part["j_per_token"], part["value"], label=series, s=30)
        ax.set_xscale("log")
        if "perplexity" in metric:
            ax.set_yscale("log")
        ax.set_xlabel(f"estimated joules per token ({preset})")
        ax.set_ylabel(metric + (" (lower is better)" if "perplexity" in metric else " (higher is better)"))
        ax.legend(fontsize=7)
    save(fig, path)
    return (
        f"Quality against estimated energy per token ({preset}), one point per task, run and mode: "
        "the spiking model's accuracy or perplexity beside what its counted operations would cost."
    )


def _log_axis(ax, which: str, values: pd.Series) -> None:
    """A log axis labelled in plain numbers: decades when the data spans more than one, else 4-5 even ticks."""
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    finite = values[np.isfinite(values) & (values > 0)]
    wide = len(finite) and finite.max() / finite.min() > 10
    axis.set_major_locator(matplotlib.ticker.LogLocator() if wide else matplotlib.ticker.MaxNLocator(4))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def frontier(table: pd.DataFrame, path: Path, data: str, presets: list[str], model: str) -> str | None:
    """Perplexity on ``data`` against estimated energy per token, one panel per preset: a line per kind of SNN
    (conversion alone, fine-tuned; each before and after stage 3) through its bit widths, the first two labelled
    with the time steps, and the float model as a star with a dotted line at its perplexity."""
    column = f"perplexity_{data}"
    if table.empty or column not in table:
        return None
    styles = {"ptq": ("o", "-", "tab:blue", "calibrated conversion (PTQ)"), "finetuned": ("s", "-", "tab:red", "QAT fine-tuned"),
              "ptq-stdp": ("o", "--", "tab:cyan", "PTQ + stage 3"), "finetuned-stdp": ("s", "--", "tab:orange", "fine-tuned + stage 3")}
    ranged = [p for p in presets if f"mj_per_token_{p}" not in table and f"mj_per_token_{p}_low" in table]
    for p in ranged:  # a memory-aware estimate: plotted at the geometric middle of its range, the range as a bar
        table = table.assign(**{f"mj_per_token_{p}": np.sqrt(table[f"mj_per_token_{p}_low"] * table[f"mj_per_token_{p}_high"])})
    presets = [p for p in presets if f"mj_per_token_{p}" in table]
    spiking = table[table["row"] != "ann"].assign(kind=lambda f: f["row"].str.split("-", n=1).str[1])
    ann = table[table["row"] == "ann"]
    fig, axes = plt.subplots(1, len(presets), figsize=(5.2 * len(presets), 4.4), squeeze=False)
    for ax, preset in zip(axes[0], presets):
        energy = f"mj_per_token_{preset}"
        for kind, (marker, line, color, label) in styles.items():
            part = spiking[spiking["kind"] == kind].sort_values("bits")
            part = part[np.isfinite(part[column]) & (part[energy] > 0)]
            if part.empty:
                continue
            ax.plot(part[energy], part[column], marker=marker, linestyle=line, color=color, label=label)
            if preset in ranged:
                ax.errorbar(part[energy], part[column], xerr=[part[energy] - part[f"{energy}_low"], part[f"{energy}_high"] - part[energy]],
                            fmt="none", ecolor=color, alpha=0.6, capsize=2)
            if kind.endswith("stdp"):
                continue  # the stage-3 points sit beside their source's label; their mean windows are in the table
            for _, row in part.iterrows():  # PTQ labels above the point, fine-tuned ones below it
                offset = (4, 4) if kind == "ptq" else (4, -11)
                ax.annotate(f"b{int(row['bits'])} T={row['time_steps']:.0f}", (row[energy], row[column]), fontsize=7, xytext=offset,
                            textcoords="offset points", color=color)
        if not ann.empty:
            ax.scatter(ann[energy], ann[column], marker="*", s=160, color="black", zorder=5, label="float model (ANN)")
            if preset in ranged:
                ax.errorbar(ann[energy], ann[column], xerr=[ann[energy] - ann[f"{energy}_low"], ann[f"{energy}_high"] - ann[energy]],
                            fmt="none", ecolor="black", capsize=3)
            ax.axhline(float(ann[column].iloc[0]), color="black", linestyle=":", linewidth=0.8)
        _log_axis(ax, "x", pd.concat([spiking[energy], ann[energy]]))
        _log_axis(ax, "y", pd.concat([spiking[column], ann[column]]))
        ax.set_xlabel(f"estimated energy per token, mJ ({preset}, " + ("arithmetic + memory, low-high)" if preset in ranged else "arithmetic only)"))
        ax.set_ylabel(f"perplexity on {data} (lower is better)")
        ax.set_title(model, fontsize=9)
        ax.legend(fontsize=7)
    save(fig, path)
    return (f"Perplexity on {data} against estimated energy per token for {model}: each bit width's SNN from a calibrated conversion "
            "and from quantization-aware fine-tuning, before and after stage 3, labelled with its time steps; the star is the float model.")


def convergence(curves: dict[str, pd.DataFrame], path: Path) -> str | None:
    """Validation perplexity (and training loss) against step for each training run."""
    curves = {k: v for k, v in curves.items() if not v.empty and "step" in v}
    if not curves:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    token_only = all("token_loss" in log for log in curves.values())  # else some curves are whole objectives
    for name, log in sorted(curves.items()):
        column = "token_loss" if token_only else "loss"
        if column in log:
            left.plot(log["step"], log[column].rolling(10, min_periods=1).mean(), label=name, lw=1)
        if "valid_perplexity" in log:
            valid = log.dropna(subset=["valid_perplexity"])
            right.plot(valid["step"], valid["valid_perplexity"], marker="o", ms=3, label=name)
    left.set_xlabel("step")
    left.set_ylabel("training token loss (10-step mean)" if token_only else "training objective (10-step mean)")
    right.set_xlabel("step")
    right.set_ylabel("validation perplexity")
    right.set_yscale("log")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    save(fig, path)
    caption = (
        "Training convergence: training token cross-entropy (left) and validation perplexity (right, log scale) against optimizer steps."
        if token_only else
        "Training convergence: training objective (left; a dual BrainGPT's includes its POS and MoE balance terms, so compare models on the right) "
        "and validation perplexity (right, log scale) against optimizer steps."
    )
    return caption


def spike_heatmap(audit: pd.DataFrame, path: Path, title: str) -> str | None:
    """Spike rate per layer (rows) and operator (columns) from a conversion audit."""
    if audit.empty or "spike_rate" not in audit:
        return None
    rows = audit[audit["name"].str.contains(r"layers\.\d+\.")].copy()
    if rows.empty:
        return None
    rows["layer"] = rows["name"].str.extract(r"layers\.(\d+)\.")[0].astype(int)
    rows["operator"] = rows["name"].str.replace(r".*layers\.\d+\.", "", regex=True)
    table = rows.pivot_table(index="layer", columns="operator", values="spike_rate", aggfunc="mean").sort_index()
    table = table.dropna(axis=1, how="all")
    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * table.shape[1] + 2), max(3, 0.25 * table.shape[0] + 1.5)))
    image = ax.imshow(table.to_numpy(dtype=float), aspect="auto", cmap="viridis")
    ax.set_xticks(range(table.shape[1]))
    ax.set_xticklabels(table.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(table.shape[0]))
    ax.set_yticklabels(table.index, fontsize=6)
    ax.set_ylabel("layer")
    fig.colorbar(image, ax=ax, label="spikes per neuron per time step")
    save(fig, path)
    return f"Spike rate per layer and operator of {title} (from its conversion audit): the share of neuron x time-step outputs that are spikes."


def synops_by_kind(breakdown: pd.DataFrame, path: Path, preset: str) -> str | None:
    """Effective ACs, MACs and float ops per token by operator kind."""
    if breakdown.empty:
        return None
    kinds = breakdown.index.tolist()
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(kinds) + 2), 4))
    bottom = np.zeros(len(kinds))
    for column in ("Effective_ACs", "Effective_MACs", "float_ops"):
        if column in breakdown:
            values = breakdown[column].to_numpy(dtype=float)
            ax.bar(kinds, values, bottom=bottom, label=column)
            bottom += values
    ax.set_yscale("log")
    ax.set_ylabel("operations per token (log)")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    ax.legend(fontsize=7)
    save(fig, path)
    return f"Counted operations per token by operator kind (spike-driven accumulations, float multiply-accumulates, elementwise float work); energy estimates price them with {preset}."


def sweep(table: pd.DataFrame, x: str, path: Path, what: str) -> str | None:
    """A sweep (e.g. time steps) against perplexity and estimated energy, two axes."""
    needed = {x, "perplexity", "joules_per_token"}
    if table.empty or not needed <= set(table.columns):
        return None
    table = table.sort_values(x)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(table[x], table["perplexity"], marker="o", color="tab:blue")
    ax.set_xlabel(x)
    ax.set_ylabel("perplexity", color="tab:blue")
    other = ax.twinx()
    other.plot(table[x], table["joules_per_token"], marker="s", color="tab:red")
    other.set_ylabel("estimated joules per token", color="tab:red")
    if table[x].max() / max(table[x].min(), 1e-9) > 8:
        ax.set_xscale("log", base=2)
    save(fig, path)
    return f"{what}: perplexity (left axis) and estimated energy per token (right axis)."


def finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def breakeven_curves(table: pd.DataFrame, bits: int, points: int = 200) -> dict[str, dict[str, object]]:
    """What ``breakeven`` draws, per preset: the T grid, the rate-coded SNN's energy per token on it (low, high bound;
    J/token), the ANN levels (J/token, low and high) and where each drawn SNN line crosses the int-b ANN's."""
    from harness.energy.breakeven import Linear, crossing, curve

    out: dict[str, dict[str, object]] = {}
    phased = "phase" in table
    for key, rows in table.groupby(["preset", "phase"] if phased else ["preset"], sort=False):
        preset = f"{key[0]}, {key[1]}" if phased else key[0]
        rate = rows[rows["coding"].fillna("") == "rate"]
        if rate.empty or "fixed_j_low" not in rate:
            continue
        r = rate.iloc[0]
        T0 = float(r["time_steps"])
        forms = tuple(Linear(r[f"fixed_j_{b}"], r[f"steps_j_{b}"], r[f"spikes_j_{b}"], T0, r["spike_rate"]) for b in ("low", "high"))
        grid = np.unique(np.concatenate([np.geomspace(1, max(2 * T0, 4), points), [T0]]))
        anns = {r["variant"]: (r["memory_j_per_token_low"], r["memory_j_per_token_high"]) for _, r in rows[rows["coding"].fillna("") == ""].iterrows()}
        lines = tuple(curve(f, grid) for f in forms)
        ann_int = anns.get(f"ANN int{bits}", (math.nan, math.nan))
        out[str(preset)] = {"grid": grid, "snn": lines, "anns": anns,
                            "crossing": tuple(crossing(grid, line, level) for line, level in zip(lines, ann_int))}
    return out


def breakeven(table: pd.DataFrame, path: Path, bits: int, model: str) -> str | None:
    """Estimated energy per token (memory-aware, low-high band) of the rate-coded SNN against its time window T, one
    panel per memory preset; the ANN at fp32, fp16 and int-b as horizontal bands; each coding of this SNN (its counted operations)
    as a point with its range; dotted verticals where the SNN line crosses the int-b ANN (the break-even T)."""
    drawn = breakeven_curves(table, bits)
    if not drawn:
        return None
    colors = {"ANN fp32": "tab:gray", "ANN fp16": "tab:olive", f"ANN int{bits}": "tab:green"}
    markers = {"rate": ("o", "tab:blue"), "bitwise": ("D", "tab:purple"), "multilevel": ("^", "tab:red")}
    phases = list(dict.fromkeys(table["phase"])) if "phase" in table else [None]
    columns = len(drawn) // len(phases)
    fig, axes = plt.subplots(len(phases), columns, figsize=(5.2 * columns, 4.4 * len(phases)), squeeze=False)
    for ax, (preset, d) in zip(axes.flat, drawn.items()):
        grid, (low, high) = d["grid"], d["snn"]
        ax.fill_between(grid, low * 1e3, high * 1e3, color="tab:blue", alpha=0.25, label="SNN, rate coding, over T")
        ax.plot(grid, np.sqrt(low * high) * 1e3, color="tab:blue", linewidth=1)
        for label, (lo, hi) in d["anns"].items():
            ax.axhspan(lo * 1e3, hi * 1e3, color=colors.get(label, "black"), alpha=0.3)
            ax.axhline(math.sqrt(lo * hi) * 1e3, color=colors.get(label, "black"), linewidth=1, label=label)
        name, _, phase = preset.partition(", ")
        rows = table[(table["preset"] == name) & (table["coding"].fillna("") != "") & ((table["phase"] == phase) if phase else True)]
        for _, r in rows.iterrows():
            marker, color = markers.get(r["coding"], ("x", "black"))
            lo, hi = r["memory_j_per_token_low"] * 1e3, r["memory_j_per_token_high"] * 1e3
            mid = math.sqrt(lo * hi)
            ax.errorbar([r["time_steps"]], [mid], yerr=[[mid - lo], [hi - mid]], fmt=marker, color=color, capsize=3,
                        label=f"this SNN, {r['coding']} (T={r['time_steps']:.0f}), estimated", zorder=5)
        for t in d["crossing"]:
            if np.isfinite(t):
                ax.axvline(t, color="tab:green", linestyle=":", linewidth=1)
        values = pd.Series(np.concatenate([low, high]) * 1e3)
        _log_axis(ax, "x", pd.Series(grid))
        _log_axis(ax, "y", pd.concat([values, pd.Series([v * 1e3 for pair in d["anns"].values() for v in pair])]))
        ax.set_xlabel("time steps T (spike rate per step as measured)")
        ax.set_ylabel(f"estimated mJ per {'generated ' if phase == 'decode' else ''}token (arithmetic + memory)")
        ax.set_title(f"{model}, {bits} bits: {preset}", fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
    save(fig, path)
    return (f"Estimated energy per token of {model}'s SNN at {bits} bits against its time window (rate coding, band = the preset's "
            "low-high prices), beside the ANN at fp32, fp16 and int-b; points: this SNN's counted operations priced under each coding; "
            "dotted: break-even T. Every figure is estimated, none measured.")
