"""A run is its settings: what they are, model identity, settings hash, run ids, and the guarded run folder.

``open_run`` is how a command takes a run folder: it checks the run id, takes the folder's lock
(a second process on the same run is refused; a dead one's lock is taken over), deletes the
temporary files a killed writer left, and compares the settings with those the folder's
manifest records. A resume with other settings is refused with one line saying what differs,
so results made with different models or settings are never mixed in one folder. Settings are
compared in their ``canonical_settings`` form, in which a run recorded before spike codings
existed (no ``coding``) is the rate-coded run it was; its hash and default run id are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from models.arch.spiking_config import SpikingConfig
from models.load import checkpoint_files
from models.spiking.checks import SPIKING_MODES
from tasks.files import FolderLock, atomic_write_json, remove_temporaries

from ..runs import read_json
from .options import CALIBRATION, EvalOptions
from .suites import SuiteTask

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,179}")


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is a plain folder name; a one-line ValueError otherwise (no paths, no ``..``)."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ValueError(
            f"--run-id {run_id!r} is not a plain folder name: use 1-180 letters, digits and . _ + = - "
            "(starting with a letter or digit, no '..' and no '/')"
        )
    return run_id


def eval_settings(options: EvalOptions, identity: dict[str, str], modes: list[str], tasks: list[SuiteTask], spiking: SpikingConfig,
                  base_mode: str, device: str, presets: list) -> dict[str, Any]:
    """What makes a run this run: two runs with different settings never share a folder."""
    converts = base_mode == "ann" and any(m != "ann" for m in modes)
    spikes = any(m in SPIKING_MODES for m in modes)
    return {
        "model": {"name": identity["name"], "sha256": identity["sha256"], "mode": base_mode},
        "modes": modes,
        **({"coding": spiking.coding} if spikes else {}),  # how the spiking modes' neurons emit their counts
        "conversion": {"bits": spiking.bits, "time_steps": spiking.T, "granularity": options.granularity, "calibration": CALIBRATION} if converts else None,
        "tasks": [{"task": t.task, "num_fewshot": t.num_fewshot, "limit": t.limit_under(options.limit), "max_gen_toks": options.max_gen_toks or t.max_gen_toks,
                   "max_length": t.context_window(options.max_length)} for t in tasks],
        "limit": options.limit,
        "seed": options.seed,
        "max_length": options.max_length,
        "max_gen_toks": options.max_gen_toks,
        "batch_size": options.batch_size,
        "device": device.partition(":")[0],
        "torch_threads": torch.get_num_threads(),  # float sums in another order move a few spiking inputs across a rounding boundary
        "energy": {"meters": options.meters, "presets": [p.as_dict() for p in presets]},
        "versions": {"snnbench": _version("snnbench"), "lm_eval": _version("lm_eval")},
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def sha256_files(paths: list[Path]) -> str:
    """One sha256 over the names and bytes of ``paths`` (in the given order)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_identity(source: str | Path, name: str) -> dict[str, str]:
    """Name, resolved path and a sha256 of a model's weights and config (a checkpoint folder's
    files, every file of a Hugging Face folder's model included, or the single .gguf file)."""
    path = Path(source).resolve()
    files = checkpoint_files(path) if path.is_dir() else [path]
    return {"name": name, "path": str(path), "sha256": sha256_files(files)}


def canonical_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as runs are compared: a run recorded without a ``coding`` (made before spike codings existed, or
    without a spiking mode) is rate-coded, so it resumes under ``--coding rate`` and no other."""
    return {"coding": "rate", **settings} if isinstance(settings, dict) else settings


def settings_hash(settings: dict[str, Any]) -> str:
    """The hash of the ``canonical_settings`` without the default coding ``rate``: the hash (and so the default run id)
    of a rate-coded run is the one it had before codings existed."""
    canonical = canonical_settings(settings)
    if canonical.get("coding") == "rate":
        canonical = {k: v for k, v in canonical.items() if k != "coding"}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


def default_run_id(label: str, settings: dict[str, Any]) -> str:
    """A readable label plus 10 hex digits of the settings: the same settings give the same run,
    different ones (another model with the same folder name included) another."""
    clean = re.sub(r"[^A-Za-z0-9_.+=-]", "_", label).strip("._")[:160] or "run"
    return f"{clean}__{settings_hash(settings)[:10]}"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def settings_diff(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    """``"bits 8 -> 4, limit 2 -> 1"``: the settings that differ, dotted, at most ``limit`` of them."""
    a, b = _flat(old), _flat(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, "(unset)") != b.get(k, "(unset)")]
    parts = [f"{k} {_short(a.get(k, '(unset)'))} -> {_short(b.get(k, '(unset)'))}" for k in keys[:limit]]
    return ", ".join(parts) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:18] + "..." + text[-18:]


def open_run(root: Path, settings: dict[str, Any], manifest: dict[str, Any], what: str = "run") -> FolderLock:
    """Take ``root`` for this process and check it holds the same ``settings`` (or nothing yet).

    Returns the held lock (release it when the command ends). Writes the manifest (``manifest``
    plus the settings and their hash), keeping the first start time of a resumed run.
    """
    lock = FolderLock(root, f"{what} {root}", advice="wait for it to finish or choose another --run-id").acquire()
    try:
        remove_temporaries(root)
        previous_path = root / "manifest.json"
        record = {**manifest, "settings": settings, "settings_sha256": settings_hash(settings)}
        if previous_path.exists():
            previous = read_json(previous_path)
            if not isinstance(previous, dict) or "settings" not in previous:
                raise ValueError(f"{root} was made by an older snnbench and records no settings; choose another --run-id (or delete that folder)")
            old, new = canonical_settings(previous["settings"]), canonical_settings(settings)
            if old != new:
                raise ValueError(
                    f"{root} holds a run with other settings ({settings_diff(old, new)}); "
                    "choose another --run-id, or leave --run-id out to get one named after these settings"
                )
            record["started_at"] = previous.get("started_at", record.get("started_at"))
            record["resumed_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(previous_path, record)
    except BaseException:
        lock.release()
        raise
    return lock
