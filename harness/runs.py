"""Run outputs: what ran (machine, versions, commit) and reading result files; atomic writes live in ``tasks.files``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from tasks.files import atomic_write_json, atomic_write_text  # noqa: F401  (re-exported for the harness)


def machine_info() -> dict[str, Any]:
    """What ran the job: platform, CPU, cores, memory, GPUs."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [],
    }
    try:
        with open("/proc/meminfo") as handle:
            info["memory_gib"] = round(int(handle.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def versions() -> dict[str, str]:
    out = {}
    for package in ("snnbench", "torch", "lm_eval", "transformers", "tokenizers", "codecarbon", "nvidia-ml-py", "pandas"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def git_commit(folder: str | os.PathLike[str] | None = None) -> str | None:
    """The commit of the snnbench checkout (with -dirty when it has changes), or None outside git."""
    where = str(folder or Path(__file__).resolve().parents[1])
    try:
        commit = subprocess.run(["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def read_json(path: str | os.PathLike[str]) -> Any:
    """A results file, or a one-line ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable ({err})") from None
