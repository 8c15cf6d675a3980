"""How a model's operators execute: the mode, bit width, time steps, and which operators stay float.

Modes (DESIGN.md): ``ann`` float operators (the baseline); ``qat`` quantized operators
(QSynapsis, stage 1); ``snn`` spiking operators stepped through T time steps; ``snn-fused``
the same spiking network in closed form. ``keep_float`` keeps chosen operator kinds float in
any mode, for ablations; the model then reports a lower spiking coverage. ``coding`` is how the
EI-IF neurons of the spiking modes emit their counts (``rate``, ``bitwise``, ``multilevel``:
``models/spiking/neuron.py``); the counts, hence the outputs, are the same in every coding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from numbers import Real
from typing import Any

from models.fields import check_fields
from models.spiking.checks import CODINGS, check_bits, check_time_steps, max_level
from models.spiking.quant import GRANULARITIES, QuantSpec

MODES = ("ann", "qat", "snn", "snn-fused")
OPERATOR_KINDS = ("linear", "lm_head", "attention", "softmax", "silu", "multiply", "norm", "layernorm", "gelu")
# the staircase kinds (fitted to an input range, per layer): kind -> (default range field, per-layer ranges field)
RANGE_FIELDS = {"silu": ("silu_x_max", "silu_x_max_per_layer"), "gelu": ("gelu_x_max", "gelu_x_max_per_layer")}


@dataclass(frozen=True)
class SpikingConfig:
    mode: str = "ann"
    bits: int = 8
    time_steps: int | None = None
    keep_float: tuple[str, ...] = ()
    linear_granularity: str = "token"
    norm_granularity: str = "token"
    silu_x_max: float = 8.0
    silu_x_max_per_layer: dict[int, float] = field(default_factory=dict)
    kind_bits: dict[str, int] = field(default_factory=dict)  # e.g. {"multiply": 10}: more time steps for one kind
    gelu_x_max: float = 8.0  # SNNGELU's fitted input range (GPT-2), like silu_x_max
    gelu_x_max_per_layer: dict[int, float] = field(default_factory=dict)
    coding: str = "rate"  # spike coding of the EI-IF neurons (a checkpoint saved before codings existed loads as rate)

    def __post_init__(self) -> None:
        check_fields(self, positive=("silu_x_max", "gelu_x_max"), choices={"mode": MODES, "coding": CODINGS})
        check_bits(self.bits)
        if self.time_steps is not None:
            check_time_steps(self.time_steps, upper=max_level(self.bits))
        unknown = [k for k in self.keep_float if k not in OPERATOR_KINDS]
        if unknown:
            raise ValueError(f"keep_float has unknown operator kinds {unknown}; known: {', '.join(OPERATOR_KINDS)}")
        for name in ("linear_granularity", "norm_granularity"):
            if getattr(self, name) not in GRANULARITIES[:4]:
                raise ValueError(f"{name} must be one of {', '.join(GRANULARITIES[:4])}, got {getattr(self, name)!r}")
        for kind, bits in self.kind_bits.items():
            if kind not in OPERATOR_KINDS:
                raise ValueError(f"kind_bits has unknown operator kind {kind!r}; known: {', '.join(OPERATOR_KINDS)}")
            check_bits(bits, f"kind_bits[{kind!r}]")

    @property
    def T(self) -> int:
        return self.time_steps if self.time_steps is not None else max_level(self.bits)

    def steps_for(self, kind: str) -> int:
        """Time steps of operator ``kind``: the largest its own bit width allows, else the model's T."""
        return max_level(self.kind_bits[kind]) if kind in self.kind_bits else self.T

    def op_mode(self, kind: str) -> str:
        """The mode operator ``kind`` runs in: ``ann`` when the model is ANN or the kind is kept float."""
        return "ann" if self.mode == "ann" or kind in self.keep_float else self.mode

    def x_max(self, kind: str, layer: int) -> float:
        """The input range of staircase kind ``kind`` (``RANGE_FIELDS``) in layer ``layer``: its calibrated one, else the default."""
        default, per_layer = RANGE_FIELDS[kind]
        return getattr(self, per_layer).get(layer, getattr(self, default))

    def with_ranges(self, mode: str, ranges: dict[str, dict[int, float]]) -> "SpikingConfig":
        """In ``mode``, with the per-layer input ranges of every staircase kind replaced by ``ranges`` (none: {})."""
        return self.with_mode(mode, **{per_layer: dict(ranges.get(kind, {})) for kind, (_, per_layer) in RANGE_FIELDS.items()})

    def spec(self, granularity: str = "token", kind: str | None = None) -> QuantSpec:
        bits = self.kind_bits.get(kind, self.bits) if kind else self.bits
        return QuantSpec(bits=bits, time_steps=self.steps_for(kind) if kind else self.T, granularity=granularity)

    def with_mode(self, mode: str, **changes: Any) -> "SpikingConfig":
        return SpikingConfig(**{**asdict(self), "mode": mode, **changes})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["keep_float"] = list(self.keep_float)
        d["silu_x_max_per_layer"] = {str(k): v for k, v in self.silu_x_max_per_layer.items()}
        d["gelu_x_max_per_layer"] = {str(k): v for k, v in self.gelu_x_max_per_layer.items()}
        d["kind_bits"] = dict(self.kind_bits)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SpikingConfig":
        """The config ``to_dict`` wrote; a one-line ValueError naming the key for a value of the wrong kind."""
        if not isinstance(d, dict):
            raise ValueError(f"spiking config must be a mapping of settings (mode, bits, ...), got {d!r}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"spiking config has unknown keys {unknown}")
        d = dict(d)
        for key, (convert, expected) in _FROM_JSON.items():
            if key in d:
                d[key] = _converted(key, d[key], convert, expected)
        for key in ("silu_x_max", "gelu_x_max"):
            if key in d and not isinstance(d[key], Real):
                raise ValueError(f"spiking config {key} must be a number, got {d[key]!r}")
        return cls(**d)


def _layer_numbers(d: dict) -> dict[int, float]:
    """``{"0": 8.0}`` (JSON keys are strings) as ``{0: 8.0}``."""
    return {int(k): float(v) for k, v in d.items()}


def _kind_bits(d: dict) -> dict[str, int]:
    """Bit widths by operator kind, as ints."""
    return {str(k): int(v) for k, v in d.items()}


# The container fields: how from_dict turns their JSON form into the field's, and what it expects.
_FROM_JSON = {
    "keep_float": (tuple, "a list of operator kinds"),
    "silu_x_max_per_layer": (_layer_numbers, 'a mapping of layer numbers to numbers, e.g. {"0": 8.0}'),
    "gelu_x_max_per_layer": (_layer_numbers, 'a mapping of layer numbers to numbers, e.g. {"0": 8.0}'),
    "kind_bits": (_kind_bits, 'a mapping of operator kinds to bit widths, e.g. {"multiply": 10}'),
}


def _converted(key: str, value: Any, convert: Any, expected: str) -> Any:
    """``convert(value)``, or a one-line ValueError naming ``key`` when the value cannot be converted."""
    try:
        return convert(value)
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"spiking config {key} must be {expected}, got {value!r}") from None


def parse_kind_bits(items: list[str] | None, flag: str = "--kind-bits") -> dict[str, int]:
    """``["multiply=10", "silu=9"]`` -> {"multiply": 10, "silu": 9}; one-line errors naming ``flag`` for bad kinds or bit widths."""
    out = {}
    for item in items or []:
        kind, _, bits = (part.strip() for part in item.partition("="))
        if not bits.isdigit():
            raise ValueError(f"{flag} expects KIND=BITS (e.g. multiply=10), got {item!r}")
        if kind not in OPERATOR_KINDS:
            raise ValueError(f"{flag} {item!r}: unknown operator kind {kind!r}; known: {', '.join(OPERATOR_KINDS)}")
        out[kind] = check_bits(int(bits), f"{flag} {kind}")
    return out
