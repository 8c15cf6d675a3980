"""Argument checks shared by the spiking operators.

Every check raises ``ValueError`` with one line that names the argument, says what
was wrong and how to fix it.
"""

from __future__ import annotations

import math

import torch

MIN_BITS = 2
MAX_BITS = 16


def max_level(bits: int) -> int:
    """Largest spike count a ``bits``-bit symmetric quantizer can express: 2**(bits-1) - 1."""
    return 2 ** (bits - 1) - 1


def check_bits(bits: object, name: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"{name} must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}; "
            f"pick e.g. {name}=8"
        )
    return bits


def check_time_steps(time_steps: object, name: str = "time_steps", upper: int | None = None) -> int:
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {time_steps!r}")
    if upper is not None and time_steps > upper:
        raise ValueError(
            f"{name}={time_steps} exceeds the {upper} levels the chosen bit width can express; "
            f"lower {name} or raise bits"
        )
    return time_steps


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() and x.numel():
        lo, hi = torch.aminmax(x.detach())  # one pass; NaN and inf both show in the extremes
        if not (math.isfinite(lo.item()) and math.isfinite(hi.item())):
            bad = "NaN" if bool(torch.isnan(x).any()) else "inf"
            raise ValueError(f"{name} contains {bad} values; spiking operators need finite inputs")
    return x


def check_last_dim(x: torch.Tensor, size: int, name: str, what: str) -> None:
    if x.dim() == 0 or x.shape[-1] != size:
        got = "a scalar" if x.dim() == 0 else f"shape {tuple(x.shape)}"
        raise ValueError(f"{name} must have last dimension {size} ({what}), got {got}")


def check_positive(value: torch.Tensor | float, name: str) -> None:
    t = torch.as_tensor(value)
    if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError(f"{name} must be finite and > 0 for every neuron, got min {float(t.min())}")


def check_nonnegative(value: torch.Tensor | float, name: str) -> None:
    t = torch.as_tensor(value)
    if not bool(torch.isfinite(t).all()) or not bool((t >= 0).all()):
        raise ValueError(f"{name} must be finite and >= 0 for every neuron, got min {float(t.min())}")


SPIKING_MODES = ("snn", "snn-fused")
OPERATOR_MODES = ("qat", "snn", "snn-fused")


def check_mode(mode: object, allowed: tuple[str, ...] = SPIKING_MODES) -> str:
    """The operator's execution mode: ``qat`` (quantized), ``snn`` (time-stepped) or ``snn-fused`` (closed form)."""
    if mode not in allowed:
        raise ValueError(f"mode (the execution path) must be one of {', '.join(allowed)}, got {mode!r}")
    return mode  # type: ignore[return-value]


CODINGS = ("rate", "bitwise", "multilevel")


def check_coding(coding: object, name: str = "coding") -> str:
    """The spike coding of an EI-IF neuron: ``rate`` (T steps), ``bitwise`` (ceil(log2(T+1)) steps) or ``multilevel`` (1 step)."""
    if coding not in CODINGS:
        raise ValueError(f"{name} (the spike coding) must be one of {', '.join(CODINGS)}, got {coding!r}")
    return coding  # type: ignore[return-value]


def coding_steps(coding: str, time_steps: int) -> int:
    """Time steps a coding takes to emit a count in [-T, T]: rate T, bitwise K = ceil(log2(T + 1)) (its binary
    digits; ``int.bit_length`` is exact where log2 in float is not), multilevel 1 (one graded spike)."""
    T = check_time_steps(time_steps)
    return {"rate": T, "bitwise": T.bit_length(), "multilevel": 1}[check_coding(coding)]
