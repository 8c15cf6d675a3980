"""GPU energy from NVML (the nvidia-ml-py package, module ``pynvml``).

Preferred: ``nvmlDeviceGetTotalEnergyConsumption``, the board's energy in mJ since the
driver was loaded (Volta or newer; NVML API reference), read at both ends of a window.
The counter is an unsigned 64-bit value: a stop value below the start value is taken as a
wrap. It updates every 20-100 ms on recent GPUs (PETSc, ``PetscLogGpuEnergyMeter`` notes),
so windows shorter than ``min_seconds`` (1 s, DESIGN.md) give ``joules=None``.

Fallback for GPUs without the counter (``NVMLError_NotSupported``): ``nvmlDeviceGetPowerUsage``
(mW) sampled in a thread at a fixed interval and integrated with the trapezoid rule. On
Ampere (except GA100) and newer GPUs that reading is itself a 1 s average (NVML API
reference), another reason for windows of 1 s or more.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from types import ModuleType

import torch

from .meter import MEASURED, EnergyMeter, EnergyReading

WRAP = 2**64  # the energy counter is an unsigned long long (mJ)


def _pynvml() -> ModuleType:
    import pynvml  # optional at run time: NVML needs an NVIDIA driver

    return pynvml


def _error(nvml: ModuleType, name: str) -> type[BaseException] | tuple[()]:
    """An NVMLError subclass by name, or () (catches nothing) if this pynvml lacks it."""
    return getattr(nvml, name, ())


def _why_unavailable(nvml: ModuleType, e: BaseException) -> str:
    if isinstance(e, _error(nvml, "NVMLError_LibraryNotFound")):
        return "no NVIDIA driver (libnvidia-ml.so not found)"
    if isinstance(e, _error(nvml, "NVMLError_DriverNotLoaded")):
        return "NVIDIA driver not loaded"
    if isinstance(e, _error(nvml, "NVMLError_NoPermission")):
        return "no permission to use NVML"
    return f"NVML failed: {type(e).__name__}: {e}"


def nvml_index(cuda_index: int | None) -> int | str:
    """NVML's index (or UUID) of CUDA device ``cuda_index``, honouring CUDA_VISIBLE_DEVICES.

    NVML numbers all GPUs of the machine; CUDA numbers the visible ones only.
    """
    cuda_index = cuda_index or 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if cuda_index >= len(visible):
        return cuda_index
    entry = visible[cuda_index]
    return int(entry) if entry.isdigit() else entry


def _cuda_synchronize() -> None:
    """Wait for the work queued on every visible CUDA device (no-op without CUDA)."""
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            torch.cuda.synchronize(i)


class NvmlMeter(EnergyMeter):
    """Energy of one GPU over a window, measured by NVML.

    ``gpu_index``: NVML index or GPU UUID. ``sample_interval``: seconds between power samples
    (fallback only). ``synchronize``: called at both ends of a window (default
    ``torch.cuda.synchronize`` on every visible device when CUDA is available). ``nvml``: the pynvml module (tests
    pass a stand-in).
    """

    kind = MEASURED

    def __init__(
        self,
        gpu_index: int | str = 0,
        *,
        sample_interval: float = 0.1,
        min_seconds: float = 1.0,
        synchronize: Callable[[], None] | None = None,
        nvml: ModuleType | None = None,
    ) -> None:
        self._nvml = nvml or _pynvml()
        self._sync = synchronize or _cuda_synchronize
        self.sample_interval = sample_interval
        self.min_seconds = min_seconds
        self.name = f"nvml:gpu{gpu_index}"
        self._nvml.nvmlInit()
        self._open = True
        try:
            if isinstance(gpu_index, str):
                self._handle = self._nvml.nvmlDeviceGetHandleByUUID(gpu_index)
            else:
                self._handle = self._nvml.nvmlDeviceGetHandleByIndex(gpu_index)
            try:
                self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                self.method = "energy counter"
            except _error(self._nvml, "NVMLError_NotSupported"):
                self._nvml.nvmlDeviceGetPowerUsage(self._handle)  # raises if power is unsupported too
                self.method = "power sampling"
        except BaseException:
            self.close()
            raise
        self._t0: float | None = None
        self._e0 = 0
        self._samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def available(cls, nvml: ModuleType | None = None) -> tuple[bool, str]:
        try:
            nvml = nvml or _pynvml()
        except ImportError:
            return False, "nvidia-ml-py (pynvml) is not installed"
        try:
            nvml.nvmlInit()
        except Exception as e:  # noqa: BLE001 - every NVML failure becomes a reason
            return False, _why_unavailable(nvml, e)
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
        return True, ""

    @property
    def source(self) -> str:
        if self.method == "energy counter":
            return f"nvml:total_energy_counter {self.name.split(':')[1]}"
        return f"nvml:power_usage sampling {self.name.split(':')[1]}"

    def _counter(self) -> int:
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def _sample(self) -> None:
        watts = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
        with self._lock:
            self._samples.append((time.perf_counter(), watts))

    def _sampler(self) -> None:
        while not self._halt.wait(self.sample_interval):
            self._sample()

    def start(self) -> None:
        self._sync()
        if self.method == "energy counter":
            self._e0 = self._counter()
            self._t0 = time.perf_counter()
            return
        self._samples = []
        self._halt.clear()
        self._t0 = time.perf_counter()
        self._sample()
        self._thread = threading.Thread(target=self._sampler, name=f"{self.name} power sampler", daemon=True)
        self._thread.start()

    def stop(self) -> EnergyReading:
        if self._t0 is None:
            raise RuntimeError(f"{self.name}: stop() without start()")
        self._sync()
        if self.method == "energy counter":
            e1 = self._counter()
            seconds = time.perf_counter() - self._t0
            wrapped = e1 < self._e0
            delta_mj = e1 - self._e0 + (WRAP if wrapped else 0)
            details = {"method": "energy counter", "counter_start_mJ": self._e0, "counter_stop_mJ": e1, "wrapped": wrapped}
            joules: float | None = delta_mj / 1000.0
        else:
            self._halt.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            self._sample()
            seconds = time.perf_counter() - self._t0
            with self._lock:
                samples = list(self._samples)
            joules = _trapezoid(samples)
            watts = [w for _, w in samples]
            details = {
                "method": "power sampling",
                "samples": len(samples),
                "interval_s": self.sample_interval,
                "span_s": samples[-1][0] - samples[0][0],
                "min_watts": min(watts),
                "max_watts": max(watts),
            }
        self._t0 = None
        return self.reading(joules, seconds, details, "NVML's counter and power readings update too slowly for it", self.idle_watts)

    def close(self) -> None:
        halt = getattr(self, "_halt", None)
        if halt is not None:
            halt.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join()
            self._thread = None
        if getattr(self, "_open", False):
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass


def _trapezoid(samples: list[tuple[float, float]]) -> float:
    """Integral of power (W) over time (s) in joules, trapezoid rule over (time, watts) samples."""
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(samples, samples[1:]))
