"""Keep freed tensor memory in the process instead of returning it to the kernel (glibc only).

glibc serves blocks above its mmap threshold (at most 32 MB) with fresh mmap'd pages, so
every large temporary (a layer's attention scores at 1,024 tokens are ~38 MB, and a spiking
forward makes a dozen of them per layer) is page-faulted and zeroed by the kernel again.
Measured here on SmolLM2 at 1,024 tokens, one thread: snn-fused forward 15 s -> 9 s, ann
4.8 s -> 4.5 s. ``tune_allocator`` turns mmap off for malloc and raises the trim threshold,
so freed blocks are reused; the price is a resident size that stays at its peak. Set
``SNNBENCH_SYSTEM_MALLOC=1`` to keep the system's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_MAX = -4
_tuned: bool | None = None


def tune_allocator() -> bool:
    """Apply the settings once per process; True when they are in force (glibc on Linux, not opted out)."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not sys.platform.startswith("linux") or os.environ.get("SNNBENCH_SYSTEM_MALLOC") == "1":
        return _tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return _tuned
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _tuned = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _tuned
