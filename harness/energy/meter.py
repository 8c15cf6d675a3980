"""The common interface of the energy meters: one meter, one figure (NeuroBench style).

A meter measures a window: ``start()`` opens it, ``stop()`` closes it and returns an
``EnergyReading``. A reading is either "measured" (a hardware energy counter or power
sensor was read) or "estimated" (a model such as CodeCarbon's TDP fallback); the two are
never mixed in one figure. When a window is too short for a meter's counter, the meter
returns ``joules=None`` and says why in ``details["too_short"]`` instead of a number.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

MEASURED = "measured"
ESTIMATED = "estimated"
KINDS = (MEASURED, ESTIMATED)


@dataclass(frozen=True)
class EnergyReading:
    joules: float | None  # energy of the window; None when the meter could not measure it
    seconds: float  # wall time of the window
    kind: str  # "measured" or "estimated", never mixed
    source: str  # e.g. "nvml:total_energy_counter gpu0", "rapl:intel-rapl:0 package-0"
    idle_watts: float | None = None  # idle power measured apart (not subtracted from joules)
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"EnergyReading.kind must be one of {KINDS}, not {self.kind!r}")

    @property
    def watts(self) -> float | None:
        """Mean power of the window, None without joules or time."""
        if self.joules is None or self.seconds <= 0:
            return None
        return self.joules / self.seconds

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["watts"] = self.watts
        return d


class EnergyMeter(abc.ABC):
    """One energy figure over a window. Subclasses set ``name``, ``kind`` and ``min_seconds``."""

    name: str = "meter"
    kind: str = MEASURED
    min_seconds: float = 0.0  # shorter windows give joules=None with details["too_short"]
    idle_watts: float | None = None  # set by measure_idle(); reported beside every reading, never subtracted from it

    @abc.abstractmethod
    def start(self) -> None:
        """Open a window (synchronize the device first where there is one)."""

    @abc.abstractmethod
    def stop(self) -> EnergyReading:
        """Close the window and return its reading."""

    def close(self) -> None:
        """Release what the meter holds (threads, libraries). Safe to call twice."""

    def measure_idle(self, seconds: float = 5.0) -> float | None:
        """Idle power (W) over ``seconds`` of sleep before the work, kept as ``idle_watts`` and
        reported beside every later reading (the readings themselves stay raw)."""
        self.start()
        time.sleep(seconds)
        self.idle_watts = self.stop().watts
        return self.idle_watts

    @classmethod
    @abc.abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(usable here, one-line reason if not). Never raises."""

    @property
    def source(self) -> str:
        return self.name

    def reading(self, joules: float | None, seconds: float, details: dict, why_short: str, idle_watts: float | None = None) -> EnergyReading:
        """The window's reading; below ``min_seconds`` joules become None and figures in joules
        leave ``details``, replaced by ``details["too_short"]`` saying why. ``idle_watts``
        defaults to the meter's measured idle power."""
        idle_watts = self.idle_watts if idle_watts is None else idle_watts
        if seconds < self.min_seconds:
            details = {k: v for k, v in details.items() if "joules" not in k}
            details["too_short"] = f"window of {seconds:.3f} s is shorter than {self.min_seconds:g} s: {why_short}"
            joules = None
        return EnergyReading(joules, seconds, self.kind, self.source, idle_watts, details)

    def failed(self, seconds: float, error: str) -> EnergyReading:
        """A reading that says the meter failed during the window."""
        return EnergyReading(None, seconds, self.kind, self.source, details={"error": error})

    def __enter__(self) -> "EnergyMeter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def measure(meters: Sequence[EnergyMeter]) -> Iterator[dict[str, EnergyReading]]:
    """Measure one window with every meter: ``with measure(ms) as r: work()``; then ``r[name]``.

    The dict is filled when the block exits (meters are started in order and stopped in
    reverse). A meter that raises gives a reading with ``joules=None`` and ``details["error"]``
    rather than losing the other meters' readings.
    """
    readings: dict[str, EnergyReading] = {}
    started: list[tuple[EnergyMeter, float]] = []
    for meter in meters:
        t0 = time.perf_counter()
        try:
            meter.start()
            started.append((meter, t0))
        except Exception as e:  # noqa: BLE001 - one meter's failure must not stop the run
            readings[meter.name] = meter.failed(0.0, f"start failed: {type(e).__name__}: {e}")
    try:
        yield readings
    finally:
        for meter, t0 in reversed(started):
            try:
                readings[meter.name] = meter.stop()
            except Exception as e:  # noqa: BLE001
                readings[meter.name] = meter.failed(time.perf_counter() - t0, f"stop failed: {type(e).__name__}: {e}")
