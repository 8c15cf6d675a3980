"""Memory-aware estimated energy: arithmetic plus the memory traffic of the counted operations.

Arithmetic alone is where SNN energy claims go wrong (Lemaire et al. 2022, "An analytical
estimation of spiking neural networks energy efficiency"; Dampfhoffer et al., "Are SNNs really
more energy-efficient than ANNs?", IEEE TETCI 2023): weights, membrane potentials (read and
written every time step), spikes and activations move through memory, and that can dominate.
This module prices, per operator of an ``OpCounter``, from its counts (``models/spiking/counters.py``)

    arithmetic   ACs x E_add(accumulator) + MACs x E_mac + float ops x E_mac      (Horowitz 2014)
    weights      weight elements read (per token, per time step or per synaptic event: the dataflow)
    cache        cached keys/values read by attention (same dataflow)
    membrane     2 x neuron time steps (one read, one write) x membrane bits
    spikes       address events (spikes x address bits) or a bitmap (2 bits per neuron step), written and read
    activations  value elements read and written

each access at the price of the memory it comes from (``memory.toml``: SRAM arrays bracketed by
size, DRAM off chip), as a low-high range. ``Variant`` says what is priced: an ANN at fp32,
fp16 or b-bit integers, or an SNN whose weights and activations are b-bit integers (the
iso-precision comparison of Yan et al. 2024). Every figure is an estimate; each component says
what it scales with (``fixed``, ``spikes``, ``steps``) so ``breakeven.py`` can move along T
and the spike rate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.spiking.counters import OpStats

from .meter import ESTIMATED
from .synops import PJ, PresetError, read_tables

MEMORY_FILE = Path(__file__).with_name("memory.toml")
DATAFLOWS = ("per_token", "per_step", "per_spike")
SPIKE_FORMATS = ("aer", "bitmap")
COMPONENTS = ("arithmetic", "weights", "cache", "membrane", "spikes", "activations")
SCALES = ("fixed", "steps", "spikes")


# ---------------------------------------------------------------- arithmetic per precision


@dataclass(frozen=True)
class Precision:
    """A number format and its arithmetic prices (pJ per add and per multiply, 45 nm)."""

    name: str
    bits: int
    pj_add: float
    pj_mult: float

    @property
    def pj_mac(self) -> float:
        return self.pj_add + self.pj_mult


_HOROWITZ = {"fp32": (32, 0.9, 3.7), "fp16": (16, 0.4, 1.1), "int8": (8, 0.03, 0.2), "int32": (32, 0.1, 3.1)}


def precision(name: str) -> Precision:
    """``fp32``, ``fp16`` or ``int<b>`` (1 <= b <= 32) with Horowitz's 45 nm prices (ISSCC 2014).

    int8 and int32 are the table's entries; other widths scale from int8: an adder linearly in b,
    a multiplier with b^2 (array multiplier), an assumption the result's notes repeat.
    """
    if name in _HOROWITZ:
        return Precision(name, *_HOROWITZ[name])
    if name.startswith("int") and name[3:].isdigit() and 1 <= int(name[3:]) <= 32:
        b = int(name[3:])
        return Precision(name, b, 0.03 * b / 8, 0.2 * (b / 8) ** 2)
    raise ValueError(f"unknown precision {name!r}: use fp32, fp16 or int<b> with 1 <= b <= 32")


@dataclass(frozen=True)
class Variant:
    """What is priced: an ANN (every MAC at ``data``) or an SNN (ACs into a membrane-width accumulator).

    ``data``: weights, activations and cached keys/values. ``coding`` (SNN): under ``multilevel``
    the MACs are graded spikes and scale with the spike count.
    """

    label: str
    data: Precision
    spiking: bool = False
    coding: str = "rate"


# ---------------------------------------------------------------- presets


@dataclass(frozen=True)
class MemoryPreset:
    """A memory system and a dataflow (``memory.toml`` documents each field)."""

    name: str
    on_chip_bytes: float
    sram: tuple[tuple[float, float], ...]
    dram_pj: tuple[float, float]
    bank_bytes: tuple[float, float]
    local_bytes: float
    access_bits: int
    write_factor: float
    dataflow: str
    spike_format: str
    aer_bits: int
    membrane_bits: int
    citation: str
    notes: str = ""

    def as_settings(self) -> dict[str, Any]:
        """Every field, JSON-ready (an unbounded capacity as "inf"): what a run records so other prices never mix in."""
        fields = {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}
        return json.loads(json.dumps(fields))  # tuples as lists: equal to itself read back from a manifest

    def assumptions(self) -> str:
        """The preset's assumptions in one line, for tables and notes."""
        chip = "all on chip" if math.isinf(self.on_chip_bytes) else f"{_size(self.on_chip_bytes)} on chip, DRAM beyond"
        banks = "" if self.bank_bytes == (0, 0) else f", banks {_size(self.bank_bytes[0])}-{_size(self.bank_bytes[1])}"
        return (f"{chip}{banks}; membranes, spikes and activations in {_size(self.local_bytes)} buffers; "
                f"SNN weights read {self.dataflow.replace('_', ' ')}; spikes as {self.spike_format}"
                f"{f' ({self.aer_bits}-bit addresses)' if self.spike_format == 'aer' else ''}; {self.membrane_bits}-bit membranes; "
                f"{self.access_bits}-bit accesses, writes x{self.write_factor:g}")


def _size(n: float) -> str:
    for unit, div in (("MB", 2**20), ("KB", 2**10)):
        if n >= div:
            return f"{n / div:g} {unit}"
    return f"{n:g} B"


_MEMORY_KEYS = {"name", "on_chip_bytes", "sram", "dram_pj", "bank_bytes", "local_bytes", "access_bits", "write_factor", "dataflow",
                "spike_format", "aer_bits", "membrane_bits", "citation", "notes"}


def _bits(value: Any, where: str) -> int:
    """A width in bits: a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PresetError(f"{where} must be a whole number of bits >= 1, not {value!r}")
    return value


def _positive(value: Any, where: str, allow_inf: bool = False, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise PresetError(f"{where} must be a number, not {value!r}")
    if (math.isinf(value) and not allow_inf) or value < 0 or (value == 0 and not allow_zero):
        raise PresetError(f"{where} = {value} must be {'non-negative' if allow_zero else 'positive'}{' (or inf)' if allow_inf else ' and finite'}")
    return float(value)


def _pair(value: Any, where: str, allow_zero: bool = False) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = _positive(value, where, allow_zero=allow_zero)
        return v, v
    if not isinstance(value, list) or len(value) != 2:
        raise PresetError(f"{where} must be a number or [low, high], not {value!r}")
    low, high = (_positive(v, where, allow_zero=allow_zero) for v in value)
    if low > high:
        raise PresetError(f"{where} = {value}: low is above high")
    return low, high


def _parse_memory(path: Path, known: Mapping[str, MemoryPreset]) -> dict[str, MemoryPreset]:
    out: dict[str, MemoryPreset] = {}
    for i, entry in enumerate(read_tables(path, "memory")):
        label = f"{path}: memory[{i}]" + (f" ({entry.get('name')!r})" if isinstance(entry, dict) and isinstance(entry.get("name"), str) else "")
        if not isinstance(entry, dict):
            raise PresetError(f"{label} must be a [[memory]] table")
        missing = sorted(_MEMORY_KEYS - {"notes"} - set(entry))
        if missing:
            raise PresetError(f"{label}: missing key {missing[0]!r}")
        unknown = sorted(set(entry) - _MEMORY_KEYS)
        if unknown:
            raise PresetError(f"{label}: unknown key {unknown[0]!r} (keys: {', '.join(sorted(_MEMORY_KEYS))})")
        name = entry["name"]
        if not isinstance(name, str) or not name.strip() or name in known or name in out:
            raise PresetError(f"{label}: name must be a new non-empty string")
        sram = entry["sram"]
        if not isinstance(sram, list) or not sram or not all(isinstance(p, list) and len(p) == 2 for p in sram):
            raise PresetError(f"{label}: sram must be [[bytes, pJ], ...] with at least one array")
        levels = tuple((_positive(b, f"{label}: sram size"), _positive(e, f"{label}: sram pJ")) for b, e in sram)
        sizes, prices = [b for b, _ in levels], [e for _, e in levels]
        if sizes != sorted(set(sizes)) or prices != sorted(prices):
            raise PresetError(f"{label}: sram arrays must be listed by increasing size, each at least as dear as the one before")
        banks = _pair(entry["bank_bytes"], f"{label}: bank_bytes", allow_zero=True)
        if 0 in banks and banks != (0, 0):
            raise PresetError(f"{label}: bank_bytes must be 0 (no banks) or sizes > 0, not {entry['bank_bytes']!r}")
        for key, allowed in (("dataflow", DATAFLOWS), ("spike_format", SPIKE_FORMATS)):
            if entry[key] not in allowed:
                raise PresetError(f"{label}: {key} = {entry[key]!r}; choose one of {', '.join(allowed)}")
        out[name] = MemoryPreset(
            name=name,
            on_chip_bytes=_positive(entry["on_chip_bytes"], f"{label}: on_chip_bytes", allow_inf=True, allow_zero=True),
            sram=levels,
            dram_pj=_pair(entry["dram_pj"], f"{label}: dram_pj"),
            bank_bytes=banks,
            local_bytes=_positive(entry["local_bytes"], f"{label}: local_bytes"),
            access_bits=_bits(entry["access_bits"], f"{label}: access_bits"),
            write_factor=_positive(entry["write_factor"], f"{label}: write_factor"),
            dataflow=entry["dataflow"],
            spike_format=entry["spike_format"],
            aer_bits=_bits(entry["aer_bits"], f"{label}: aer_bits"),
            membrane_bits=_bits(entry["membrane_bits"], f"{label}: membrane_bits"),
            citation=str(entry["citation"]),
            notes=str(entry.get("notes", "")),
        )
    return out


def load_memory_presets(extra: Path | str | None = None) -> dict[str, MemoryPreset]:
    """The built-in memory presets, plus those of the user's TOML file ``extra`` (validated)."""
    presets = _parse_memory(MEMORY_FILE, {})
    if extra is not None:
        presets.update(_parse_memory(Path(extra), presets))
    return presets


# ---------------------------------------------------------------- prices of one access


def sram_price(preset: MemoryPreset, size_bytes: float) -> tuple[float, float]:
    """(low, high) pJ per access of an on-chip array of ``size_bytes``: bracketed by the table's arrays."""
    sizes = preset.sram
    if size_bytes <= sizes[0][0]:
        return sizes[0][1], sizes[0][1]
    for (b0, e0), (b1, e1) in zip(sizes, sizes[1:]):
        if size_bytes <= b1:
            return (e1, e1) if size_bytes == b1 else (e0, e1)
    b, e = sizes[-1]
    return e, e * math.sqrt(size_bytes / b)


def on_chip_price(preset: MemoryPreset, size_bytes: float) -> tuple[float, float]:
    """(low, high) pJ per access of an on-chip buffer of ``size_bytes``, split into banks if the preset says so."""
    if preset.bank_bytes == (0, 0):
        return sram_price(preset, size_bytes)
    low_bank, high_bank = (min(size_bytes, b) for b in preset.bank_bytes)
    return sram_price(preset, low_bank)[0], sram_price(preset, high_bank)[1]


@dataclass(frozen=True)
class Placement:
    """Where the weights and the cache live and what one access to each costs (pJ, low and high)."""

    weights: tuple[float, float]
    weights_where: str
    cache: tuple[float, float]
    cache_where: str


def placement(preset: MemoryPreset, weight_bytes: float, cache_bytes: float) -> Placement:
    """Weights fit on chip or come from DRAM; the cache fits beside them or comes from DRAM (``memory.toml``)."""
    weights_fit = weight_bytes <= preset.on_chip_bytes
    cache_fits = weights_fit and weight_bytes + cache_bytes <= preset.on_chip_bytes
    w = on_chip_price(preset, weight_bytes) if weights_fit else preset.dram_pj
    c = on_chip_price(preset, cache_bytes) if cache_fits else preset.dram_pj
    return Placement(w, "on chip" if weights_fit else "DRAM", c, "on chip" if cache_fits else "DRAM")


# ---------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class Part:
    """One priced component of one operator: how many elements or operations, joules low/high, what it scales with."""

    component: str
    count: float
    low: float
    high: float
    scales: str

    def __add__(self, other: "Part") -> "Part":
        return Part(self.component, self.count + other.count, self.low + other.low, self.high + other.high, self.scales)


def _access_joules(elements: float, bits: int, price: tuple[float, float], preset: MemoryPreset, factor: float = 1.0) -> tuple[float, float]:
    """Elements of ``bits`` packed into accesses of ``access_bits``, each at ``price`` pJ (x ``factor``)."""
    accesses = elements * bits / preset.access_bits * factor
    return accesses * price[0] * PJ, accesses * price[1] * PJ


def operator_parts(stats: OpStats, preset: MemoryPreset, variant: Variant, where: Placement) -> list[Part]:
    """The priced components of one operator's counts (``stats``) for ``variant`` under ``preset``."""
    data, m_bits = variant.data, preset.membrane_bits
    acc = precision(f"int{min(m_bits, 32)}")  # the accumulator: an SNN's membrane, an integer ANN's dot-product sum
    parts: list[Part] = []
    if variant.spiking:
        mac_scales = "spikes" if variant.coding == "multilevel" else "fixed"
        ac = stats.Effective_ACs * acc.pj_add * PJ
        mac = stats.Effective_MACs * (data.pj_mult + acc.pj_add) * PJ
        parts.append(Part("arithmetic", stats.Effective_ACs, ac, ac, "spikes"))
        parts.append(Part("arithmetic", stats.Effective_MACs, mac, mac, mac_scales))
    else:
        integer = data.name.startswith("int")  # b-bit products summed in the accumulator's width, as integer hardware does
        mac = stats.Effective_MACs * ((data.pj_mult + acc.pj_add) if integer else data.pj_mac) * PJ
        parts.append(Part("arithmetic", stats.Effective_MACs, mac, mac, "fixed"))
        if stats.Effective_ACs:  # an ANN has none; priced as adds if a counter reports some
            ac = stats.Effective_ACs * data.pj_add * PJ
            parts.append(Part("arithmetic", stats.Effective_ACs, ac, ac, "fixed"))
    flt = stats.float_ops * data.pj_mac * PJ
    parts.append(Part("arithmetic", stats.float_ops, flt, flt, "fixed"))

    # weights and cache: which reads depends on the dataflow (ANNs read once per token)
    dataflow = preset.dataflow if variant.spiking else "per_token"
    stationary = stats.weight_reads + stats.cache_reads
    for component, reads, price in (("weights", stats.weight_reads, where.weights), ("cache", stats.cache_reads, where.cache)):
        if not reads:
            continue
        share = reads / stationary
        if dataflow == "per_step":
            elements, scales = stats.step_reads * share, "steps"
        elif dataflow == "per_spike" and component == "weights":  # one weight read per synaptic event of the operator
            elements, scales = (stats.Effective_ACs + stats.Effective_MACs) * share, "spikes"
        else:  # once per token (the cache: once per query row, whatever the dataflow)
            elements, scales = reads, "fixed"
        parts.append(Part(component, elements, *_access_joules(elements, data.bits, price, preset), scales))

    values = stats.act_reads + stats.act_writes
    local = on_chip_price(preset, preset.local_bytes)  # membranes, spikes, activations: the same price whatever the batch
    if variant.spiking and stats.neuron_steps:
        parts.append(Part("membrane", 2 * stats.neuron_steps,
                          *_access_joules(stats.neuron_steps, m_bits, local, preset, 1 + preset.write_factor), "steps"))
        graded = data.bits if variant.coding == "multilevel" else 0  # a graded spike carries its b-bit value
        if preset.spike_format == "aer":
            parts.append(Part("spikes", stats.spikes,
                              *_access_joules(stats.spikes, preset.aer_bits + graded, local, preset, 1 + preset.write_factor), "spikes"))
        else:  # a bitmap entry per neuron step: 2 bits for a ternary spike, the value's bits for a graded one
            parts.append(Part("spikes", stats.neuron_steps,
                              *_access_joules(stats.neuron_steps, graded or 2, local, preset, 1 + preset.write_factor), "steps"))
    if values:
        act_price = local
        low_r, high_r = _access_joules(stats.act_reads, data.bits, act_price, preset)
        low_w, high_w = _access_joules(stats.act_writes, data.bits, act_price, preset, preset.write_factor)
        parts.append(Part("activations", values, low_r + low_w, high_r + high_w, "fixed"))
    return parts


@dataclass(frozen=True)
class MemoryEstimate:
    """The memory-aware estimate of one variant under one preset: per operator and component, low and high joules."""

    preset: MemoryPreset
    variant: Variant
    tokens: int
    where: Placement
    per_operator: dict[str, list[Part]] = field(repr=False)
    arithmetic_only: float = 0.0  # joules: the arithmetic components alone (no memory)

    @property
    def kind(self) -> str:
        return ESTIMATED

    @property
    def source(self) -> str:
        return f"memory:{self.preset.name}"

    def component(self, name: str, operator: str | None = None) -> tuple[float, float]:
        """Joules (low, high) of one component, summed over the operators (or of one ``operator``)."""
        ops = [self.per_operator[operator]] if operator is not None else self.per_operator.values()
        parts = [p for o in ops for p in o if p.component == name]
        return sum(p.low for p in parts), sum(p.high for p in parts)

    def count(self, name: str, operator: str | None = None) -> float:
        """Elements moved (or operations done) by one component, summed over the operators (or of one ``operator``)."""
        ops = [self.per_operator[operator]] if operator is not None else self.per_operator.values()
        return sum(p.count for o in ops for p in o if p.component == name)

    def by_scaling(self) -> dict[str, tuple[float, float]]:
        """Joules (low, high) that are fixed, scale with the time steps, and scale with the spikes."""
        out = {s: [0.0, 0.0] for s in SCALES}
        for parts in self.per_operator.values():
            for p in parts:
                out[p.scales][0] += p.low
                out[p.scales][1] += p.high
        return {k: (v[0], v[1]) for k, v in out.items()}

    @property
    def low(self) -> float:
        return sum(self.component(c)[0] for c in COMPONENTS)

    @property
    def high(self) -> float:
        return sum(self.component(c)[1] for c in COMPONENTS)

    def per_token(self) -> tuple[float, float]:
        return self.low / self.tokens, self.high / self.tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "source": self.source, "preset": self.preset.name, "variant": self.variant.label,
            "precision": self.variant.data.name, "tokens": self.tokens,
            "joules_low": self.low, "joules_high": self.high, "arithmetic_joules": self.arithmetic_only,
            "components": {c: dict(zip(("low", "high"), self.component(c))) for c in COMPONENTS},
            "weights": self.where.weights_where, "cache": self.where.cache_where,
            "assumptions": self.preset.assumptions(), "citation": self.preset.citation,
        }


def memory_estimate(
    per_module: Mapping[str, OpStats],
    preset: MemoryPreset,
    variant: Variant,
    parameters: int,
    tokens: int,
    cache_elements: int = 0,
) -> MemoryEstimate:
    """Price the per-module counts of ``tokens`` tokens (``OpCounter.totals``) for ``variant`` under ``preset``.

    ``parameters``: the model's weights (they fit on chip or not at ``variant.data``'s bits);
    ``cache_elements``: the key/value cache at its largest (0 when none is kept).
    """
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1 to price counts per token, got {tokens}")
    where = placement(preset, parameters * variant.data.bits / 8, cache_elements * variant.data.bits / 8)
    per_operator: dict[str, list[Part]] = {}
    for name, stats in per_module.items():
        merged: dict[tuple[str, str], Part] = {}
        for part in operator_parts(stats, preset, variant, where):
            key = (part.component, part.scales)
            merged[key] = merged[key] + part if key in merged else part
        per_operator[name] = list(merged.values())
    arithmetic = sum(p.low for parts in per_operator.values() for p in parts if p.component == "arithmetic")
    return MemoryEstimate(preset, variant, tokens, where, per_operator, arithmetic)
