"""Training checkpoints: the model as a loadable snnbench checkpoint, plus optimizer and loop state.

``<out>/checkpoint/`` holds ``model.safetensors`` + ``config.json`` + ``tokenizer.json`` (so
``--model <out>/checkpoint`` evaluates it directly), ``optimizer.safetensors`` (AdamW's moment
tensors, flattened) and ``trainer.json`` (step, counters, the optimizer's hyperparameters; written
last, so a folder with a readable trainer.json is complete). It is written to a temporary folder
``.checkpoint-XXXX`` and swapped in (``checkpoint`` -> ``.checkpoint-old-<pid>``, the temporary
folder -> ``checkpoint``); ``recover_checkpoint`` finishes or undoes a swap a kill interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.load import CONFIG_FILE, WEIGHTS_FILE, ModelLoadError, load_checkpoint, save_checkpoint
from tasks.files import atomic_write_json

CHECKPOINT = "checkpoint"
TRAINER_FILE = "trainer.json"
OPTIMIZER_FILE = "optimizer.safetensors"
STRAY_PATTERN = ".checkpoint-*"  # temporary folders of a save and the replaced checkpoint (.checkpoint-old-<pid>)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_checkpoint(out: Path, model, tokenizer, special_tokens: dict, optimizer: torch.optim.Optimizer, trainer: dict[str, Any]) -> Path:
    """Write model, optimizer and ``trainer`` state to a temporary folder, then swap it in as ``out/checkpoint``."""
    final = out / CHECKPOINT
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".checkpoint-"))
    try:
        save_checkpoint(model, tmp, tokenizer, extra={"name": trainer.get("name", "trained"), "training": trainer}, special_tokens=special_tokens)
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        atomic_write_json(tmp / TRAINER_FILE, {**trainer, "optimizer": meta})  # last: it marks the folder complete
        old = out / f".checkpoint-old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _complete_state(folder: Path) -> dict[str, Any] | None:
    """The trainer state of ``folder`` if it is a complete checkpoint (trainer.json readable, weights and optimizer there), else None."""
    if not all((folder / name).is_file() for name in (WEIGHTS_FILE, CONFIG_FILE, OPTIMIZER_FILE)):
        return None
    try:
        state = json.loads((folder / TRAINER_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("step"), int) and "optimizer" in state else None


def _saved_at(folder: Path, state: dict[str, Any]) -> tuple[int, int]:
    """Sort key of a complete checkpoint: when its trainer.json was written (renames keep it), then its step."""
    return (folder / TRAINER_FILE).stat().st_mtime_ns, state["step"]


def recover_checkpoint(out: Path) -> Path | None:
    """Keep the newest complete checkpoint of ``out`` as ``out/checkpoint`` and delete the other copies; returns it, or None.

    A kill during ``save_training_checkpoint`` leaves ``.checkpoint-XXXX`` (being written, or complete
    but not yet swapped in) and ``.checkpoint-old-<pid>`` (the replaced one, or the only one left
    between the two renames). ``checkpoint`` itself is only replaced, never just removed: damage no
    kill explains is left for the loader to report. Call it only while holding the run folder's lock.
    """
    final = out / CHECKPOINT
    strays = [folder for folder in sorted(out.glob(STRAY_PATTERN)) if folder.is_dir()]
    complete = {folder: state for folder in (final, *strays) if folder.is_dir() and (state := _complete_state(folder)) is not None}
    newest = max(complete, key=lambda folder: _saved_at(folder, complete[folder]), default=None)
    if newest is not None and newest != final:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(newest, final)
    for folder in strays:
        shutil.rmtree(folder, ignore_errors=True)  # the newest one is already in place
    return final if newest is not None else None


def read_trainer_state(out: Path) -> dict[str, Any] | None:
    path = out / CHECKPOINT / TRAINER_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path}: not valid JSON ({err.msg}); delete the checkpoint folder to start over") from None


def restore(out: Path, model, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load weights and optimizer state of ``out/checkpoint`` into ``model`` and ``optimizer``."""
    folder = out / CHECKPOINT
    trainer = read_trainer_state(out)
    if trainer is None:
        raise ModelLoadError(f"{folder}: no trainer.json, not a training checkpoint")
    loaded = load_checkpoint(folder)
    saved_arch = loaded.model.config.to_dict().get("architecture")
    arch = model.config.to_dict().get("architecture")
    if saved_arch != arch or loaded.model.config != model.config:
        raise ModelLoadError(
            f"{folder}: holds a {saved_arch} model with another configuration than this run's {arch} model; "
            "use another --out or --fresh to start over"
        )
    model.load_state_dict(loaded.model.state_dict())
    try:
        tensors = load_file(str(folder / OPTIMIZER_FILE))
    except Exception as err:  # safetensors raises its own error type on damaged files
        raise ModelLoadError(f"{folder / OPTIMIZER_FILE}: unreadable ({err})") from None
    optimizer.load_state_dict(_unflatten_optimizer(tensors, trainer["optimizer"]))
    return trainer
