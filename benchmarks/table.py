"""The rows of ``bench.md``: two sides, their ratio, a goal; and the markdown table and page they make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Goal:
    op: str  # ">=" or "<="
    value: float
    text: str
    stretch: float | None = None  # a second, more ambitious value (reported, not required)

    def met(self, ratio: float) -> str:
        ok = ratio >= self.value if self.op == ">=" else ratio <= self.value
        if not ok:
            return "no"
        if self.stretch is None:
            return "yes"
        stretch = ratio >= self.stretch if self.op == ">=" else ratio <= self.stretch
        return "yes" if stretch else f"yes (stretch {self.stretch:g}x not met)"


@dataclass
class Side:
    label: str
    unit: str  # "tok/s", "ms/call", "ms/step", "GFLOP/s", "s"
    stats: dict[str, Any] | None  # summarize(...) of the values in ``unit``; None when not measured
    note: str | None = None  # why it was not measured


@dataclass
class Row:
    id: str
    benchmark: str
    ours: Side
    reference: Side
    ratio: dict[str, Any] | None
    ratio_kind: str  # speed (x, ours/reference speed), slowdown (x, time ours/reference), overhead (+%), fraction (%)
    ratio_meaning: str
    goal: Goal | None = None
    met: str = "-"
    notes: list[str] = field(default_factory=list)

    def judge(self, tiny_model: bool = False) -> None:
        if self.goal is None or self.ratio is None:
            self.met = "-"
        elif tiny_model:
            self.met = "n/a (tiny model)"
        else:
            self.met = self.goal.met(self.ratio["median"])

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["goal"] = asdict(self.goal) if self.goal else None
        return d


def _fmt_value(value: float, unit: str) -> str:
    if unit == "tok/s":  # generation runs at a few tokens per second: three significant digits there
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    if unit in ("ms/call", "ms/step", "ms"):
        return f"{value:.3g}" if value < 100 else f"{value:,.0f}"
    if unit == "GFLOP/s":
        return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"
    return f"{value:.3g}"


def format_side(side: Side) -> str:
    if side.stats is None:
        return f"{side.label}: {side.note or 'not measured'}"
    s = side.stats
    return (f"{side.label}: {_fmt_value(s['median'], side.unit)} {side.unit} "
            f"({_fmt_value(s['min'], side.unit)}-{_fmt_value(s['max'], side.unit)})")


def format_ratio(ratio: dict[str, Any] | None, kind: str) -> str:
    if ratio is None:
        return "-"
    lo, med, hi = ratio["min"], ratio["median"], ratio["max"]
    if kind == "overhead":
        return f"{(med - 1) * 100:+.1f}% ({(lo - 1) * 100:+.1f} to {(hi - 1) * 100:+.1f}%)"
    if kind == "fraction":
        return f"{med * 100:.1f}% ({lo * 100:.1f}-{hi * 100:.1f}%)"
    def x(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.3g}")

    return f"{x(med)}x ({x(lo)}-{x(hi)}x)"


def markdown_table(rows: Sequence[Row]) -> str:
    """The table: benchmark | ours | reference | ratio (median, min-max) | goal | met?"""
    lines = [
        "| benchmark | ours | reference | ratio (median, min-max) | goal | met? |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{row.id}. {row.benchmark} ({row.ratio_meaning})",
            format_side(row.ours),
            format_side(row.reference),
            format_ratio(row.ratio, row.ratio_kind),
            row.goal.text if row.goal else "-",
            row.met,
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(report: dict[str, Any], rows: Sequence[Row]) -> str:
    machine = report["machine"]
    head = [
        "# snnbench bench",
        "",
        f"{report['started_at']}, {machine.get('cpu_model') or machine.get('processor')}, {machine.get('cpu_count')} cores, "
        f"{report['threads']} torch thread(s), {'quick sizes' if report['quick'] else 'full sizes'}, "
        f"{report['repeats']} repeats (ratio per repeat, sides interleaved), model: {report['model']['name']}"
        + (f" ({report['model']['fallback']})" if report["model"].get("fallback") else ""),
        f"torch {report['versions'].get('torch')}, lm_eval {report['versions'].get('lm_eval')}, "
        f"transformers {report['versions'].get('transformers')}, spikingjelly {report['versions'].get('spikingjelly')}; "
        f"commit {report.get('git_commit')}; allocator: {report.get('allocator', 'system default')}",
        *(f"{kind} kernels: {line}" for kind, line in (report.get("kernels") or {}).items() if isinstance(report.get("kernels"), dict)),
        "",
        markdown_table(rows),
    ]
    notes = [f"- {row.id}: {note}" for row in rows for note in row.notes] + [f"- {n}" for n in report.get("notes", [])]
    if notes:
        head += ["Notes:", "", *notes, ""]
    return "\n".join(head)
