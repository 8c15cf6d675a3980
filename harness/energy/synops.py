"""Estimated energy from counted operations: ACs x E_AC + MACs x E_MAC + float ops x E_float.

The counts are the NeuroBench-named ``OpStats`` of ``models/spiking/counters.py``; the prices
are presets, data with their citation, in ``presets.toml`` (45 nm figures from Horowitz,
ISSCC 2014; neuromorphic chip figures from their papers). Users add presets with a TOML
file of the same form. The result is always labelled "estimated".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.spiking.counters import OpStats

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .meter import ESTIMATED, EnergyReading

PRESETS_FILE = Path(__file__).with_name("presets.toml")
PJ = 1e-12

_REQUIRED = ("name", "pj_per_ac", "citation")
_KEYS = {"name", "pj_per_ac", "pj_per_mac", "pj_per_float_op", "borrow", "citation", "notes"}


class PresetError(ValueError):
    """A preset file is wrong; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class EnergyPreset:
    name: str
    pj_per_ac: float
    pj_per_mac: float
    pj_per_float_op: float
    citation: str
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _energy(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PresetError(f"{where} must be a number of picojoules, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise PresetError(f"{where} = {value} is not a finite non-negative energy")
    return float(value)


def read_tables(path: Path, table: str) -> list[Any]:
    """The ``[[table]]`` entries of a presets file; a one-line PresetError naming the file when it cannot be read,
    is not UTF-8 TOML, or holds anything else."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PresetError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise PresetError(f"{path}: not a UTF-8 text file; save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{path}: invalid TOML: {e}") from None
    extra = set(data) - {table}
    if extra or not isinstance(data.get(table, []), list):
        raise PresetError(f"{path}: expected only [[{table}]] tables, found {sorted(extra) or [f'{table} = ...']}")
    return data.get(table, [])


def _parse(path: Path, known: Mapping[str, EnergyPreset]) -> dict[str, EnergyPreset]:
    out: dict[str, EnergyPreset] = {}
    for i, entry in enumerate(read_tables(path, "preset")):
        if not isinstance(entry, dict):
            raise PresetError(f"{path}: preset[{i}] must be a [[preset]] table")
        label = f"{path}: preset[{i}]" + (f" ({entry['name']!r})" if isinstance(entry.get("name"), str) else "")
        for key in _REQUIRED:
            if key not in entry:
                raise PresetError(f"{label}: missing key {key!r}")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise PresetError(f"{label}: unknown key {unknown[0]!r} (keys: {', '.join(sorted(_KEYS))})")
        name = entry["name"]
        if not isinstance(name, str) or not name.strip():
            raise PresetError(f"{label}: name must be a non-empty string")
        if name in known or name in out:
            raise PresetError(f"{label}: duplicate preset name {name!r}")
        notes = str(entry.get("notes", ""))
        lender = None
        if "borrow" in entry:
            lender = {**known, **out}.get(entry["borrow"])
            if lender is None:
                raise PresetError(f"{label}: borrow = {entry['borrow']!r} names no preset defined before it")
        if "pj_per_mac" in entry:
            mac = _energy(entry["pj_per_mac"], f"{label}: pj_per_mac")
            default_float = mac
        elif lender is not None:
            mac, default_float = lender.pj_per_mac, lender.pj_per_float_op
            what = "MAC price" if "pj_per_float_op" in entry else "MAC and float-op prices"
            notes += f" {what} borrowed from {lender.name}."
        else:
            raise PresetError(f"{label}: missing key 'pj_per_mac' (or 'borrow' naming a preset to take it from)")
        flt = _energy(entry["pj_per_float_op"], f"{label}: pj_per_float_op") if "pj_per_float_op" in entry else default_float
        out[name] = EnergyPreset(
            name=name,
            pj_per_ac=_energy(entry["pj_per_ac"], f"{label}: pj_per_ac"),
            pj_per_mac=mac,
            pj_per_float_op=flt,
            citation=str(entry["citation"]),
            notes=notes.strip(),
        )
    return out


def load_presets(extra: Path | str | None = None) -> dict[str, EnergyPreset]:
    """The built-in presets, plus those of the user's TOML file ``extra`` (validated)."""
    presets = _parse(PRESETS_FILE, {})
    if extra is not None:
        presets.update(_parse(Path(extra), presets))
    return presets


def select_presets(names: str, extra: Path | str | None = None, one: bool = False, flag: str = "--energy-presets") -> list[EnergyPreset]:
    """The presets named in the comma-separated ``names`` (built-in and those of the file ``extra``); ``one``: exactly one.
    A one-line error for an unknown name, an empty list, or a file given where names belong."""
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if any(n.endswith(".toml") for n in chosen):
        raise ValueError(f"{flag} takes preset names; give your presets file with {flag}-file {names}")
    presets = load_presets(extra)
    unknown = [n for n in chosen if n not in presets]
    if unknown or not chosen:
        raise ValueError(f"{flag} {names!r}: unknown energy preset {unknown[0] if unknown else '(none given)'!r}; known: {', '.join(presets)} "
                         f"(add your own with {flag}-file FILE)")
    if one and len(chosen) != 1:
        raise ValueError(f"{flag} {names!r}: this command prices under one preset; name one of {', '.join(presets)}")
    return [presets[n] for n in chosen]


def get_preset(name: str, extra: Path | str | None = None) -> EnergyPreset:
    presets = load_presets(extra)
    if name not in presets:
        raise ValueError(f"unknown energy preset {name!r}; known: {', '.join(presets)}")
    return presets[name]


@dataclass(frozen=True)
class SynOpsEstimate:
    """Estimated energy of counted operations under one preset, with its parts."""

    preset: str
    ACs: int
    MACs: int
    float_ops: int
    ac_joules: float
    mac_joules: float
    float_joules: float
    citation: str = field(default="", repr=False)

    @property
    def joules(self) -> float:
        return self.ac_joules + self.mac_joules + self.float_joules

    @property
    def kind(self) -> str:
        return ESTIMATED  # an estimate is never a measurement

    @property
    def source(self) -> str:
        return f"synops:{self.preset}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "joules": self.joules, "kind": self.kind, "source": self.source}

    def as_reading(self, seconds: float = 0.0) -> EnergyReading:
        """The estimate as an EnergyReading (kind "estimated"), e.g. next to a measured one."""
        parts = {k: v for k, v in self.as_dict().items() if k not in ("joules", "kind", "source")}
        return EnergyReading(self.joules, seconds, self.kind, self.source, details=parts)


def estimate(stats: OpStats, preset: EnergyPreset) -> SynOpsEstimate:
    """ACs x E_AC + MACs x E_MAC + float_ops x E_float, in joules, under ``preset``."""
    acs, macs, flops = int(stats.Effective_ACs), int(stats.Effective_MACs), int(stats.float_ops)
    return SynOpsEstimate(
        preset=preset.name,
        ACs=acs,
        MACs=macs,
        float_ops=flops,
        ac_joules=acs * preset.pj_per_ac * PJ,
        mac_joules=macs * preset.pj_per_mac * PJ,
        float_joules=flops * preset.pj_per_float_op * PJ,
        citation=preset.citation,
    )


def operator_kind(module_name: str) -> str:
    """Default operator kind of a counter name: its last dotted part not a number.

    ``model.layers.3.mlp.gate_proj`` -> ``gate_proj``; a class name stays as it is.
    """
    parts = [p for p in module_name.split(".") if not p.isdigit()]
    return parts[-1] if parts else module_name


def breakdown(
    per_module: Mapping[str, OpStats],
    preset: EnergyPreset,
    tokens: int | None = None,
    kind_of: Callable[[str], str] = operator_kind,
) -> dict[str, Any]:
    """Per-operator-kind and per-token estimates from an ``OpCounter``'s per-module figures.

    ``per_module``: ``counter.totals`` or ``counter.since(snapshot)``. ``tokens``: the tokens
    those figures were counted over (per-token figures are left out without it). The result
    is JSON-ready: totals, ``per_token``, and ``by_kind`` with each kind's share of the joules.
    """
    by_kind: dict[str, OpStats] = {}
    for name, stats in per_module.items():
        kind = kind_of(name)
        by_kind[kind] = by_kind.get(kind, OpStats()) + stats
    total = estimate(sum(per_module.values(), OpStats()), preset)
    out: dict[str, Any] = {
        "preset": preset.name,
        "kind": ESTIMATED,
        "source": total.source,
        "citation": preset.citation,
        "tokens": tokens,
        "total": _figures(total),
        "per_token": None,
        "by_kind": {},
    }
    if tokens:
        out["per_token"] = {k: v / tokens for k, v in _figures(total).items()}
    for kind in sorted(by_kind, key=lambda k: -estimate(by_kind[k], preset).joules):
        e = estimate(by_kind[kind], preset)
        out["by_kind"][kind] = {**_figures(e), "share": e.joules / total.joules if total.joules else 0.0}
    return out


def _figures(e: SynOpsEstimate) -> dict[str, float]:
    return {
        "ACs": e.ACs,
        "MACs": e.MACs,
        "float_ops": e.float_ops,
        "ac_joules": e.ac_joules,
        "mac_joules": e.mac_joules,
        "float_joules": e.float_joules,
        "joules": e.joules,
    }
