"""Which energy meters apply to a device and are usable here: NVML for a GPU, RAPL and CodeCarbon for the host."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .codecarbon_meter import CodeCarbonMeter
from .meter import EnergyMeter
from .nvml import NvmlMeter, nvml_index
from .rapl import RaplMeter


def _parse_device(device: str) -> int | None:
    """None for "cpu", the CUDA index for "cuda" / "cuda:i"; ValueError otherwise."""
    m = re.fullmatch(r"cpu|cuda(?::(\d+))?", device.strip())
    if m is None:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', not {device!r}")
    if device.strip() == "cpu":
        return None
    return int(m.group(1) or 0)


# What each meter leaves unmeasured when it is missing (the second half of its note).
_MISSING = {
    "nvml": "GPU energy not measured",
    "rapl": "CPU package energy not read from RAPL",
    "codecarbon": "no CodeCarbon CPU+RAM figure",
}


def meter_factories() -> dict[str, tuple[type[EnergyMeter], Callable[..., EnergyMeter]]]:
    """Meter name -> (class, factory(cuda_index, **options))."""
    return {
        "nvml": (NvmlMeter, lambda cuda, **o: NvmlMeter(nvml_index(cuda), **o)),
        "rapl": (RaplMeter, lambda cuda, **o: RaplMeter(**o)),
        "codecarbon": (CodeCarbonMeter, lambda cuda, **o: CodeCarbonMeter(**o)),
    }


def select_meters(
    device: str = "cpu",
    kinds: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[EnergyMeter], list[str]]:
    """The usable meters for ``device`` and one-line notes for those that are not.

    ``device``: "cpu" (RAPL, CodeCarbon) or "cuda[:i]" (NVML for that GPU, plus the host
    meters). ``kinds``: meter names to try ("nvml", "rapl", "codecarbon"); None tries every
    meter that applies to the device. ``options``: keyword arguments per meter name, e.g.
    ``{"codecarbon": {"country_iso_code": "FRA"}}``.
    """
    cuda = _parse_device(device)
    factories = meter_factories()
    applicable = [n for n in factories if n != "nvml" or cuda is not None]
    if kinds is None:
        names = applicable
    else:
        unknown = [k for k in kinds if k not in factories]
        if unknown:
            raise ValueError(f"unknown meter {unknown[0]!r}; known: {', '.join(factories)}")
        names = list(dict.fromkeys(kinds))
    meters: list[EnergyMeter] = []
    notes: list[str] = []
    for name in names:
        if name not in applicable:
            notes.append(f"{name}: does not apply to device {device!r}")
            continue
        cls, factory = factories[name]
        ok, reason = cls.available()
        if ok:
            try:
                meters.append(factory(cuda, **(options or {}).get(name, {})))
                continue
            except Exception as e:  # noqa: BLE001 - a broken meter becomes a note
                reason = f"{type(e).__name__}: {e}"
        notes.append(f"{name}: {reason}; {_MISSING[name]}")
    return meters, notes
