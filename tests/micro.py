"""The micro training setup the training tests share: a fake package registry (one process), a tiny fake Penn
Treebank built from it, and a TOML config written next to it."""

from __future__ import annotations

import random
from pathlib import Path

from tasks.datasets import DATASETS, build
from tests.fake_registry import FakeRegistry

WORDS = "the a cat dog sat ran on under mat log N <unk> big small red blue".split()


def penn() -> str:
    """A fake ``treebank`` package module: train, valid and test splits of random sentences over ``WORDS``."""
    rng = random.Random(0)
    splits = {}
    for split, n in (("train", 300), ("valid", 40), ("test", 40)):
        lines = [" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + " " for _ in range(n)]
        splits[split] = "\n".join(lines) + "\n"
    return "penn = {}\n" + "".join(f"penn['{k}'] = \"\"\"{v}\"\"\"\n" for k, v in splits.items())


def toml_table(name: str, **values: object) -> str:
    """A TOML table ``[name]`` of ``values`` (strings, numbers, booleans), then a blank line."""
    return f"[{name}]\n" + "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}\n".replace("'", '"') for k, v in values.items()) + "\n"


def train_table(**values: object) -> str:
    """The ``[train]`` table of a micro run (word tokenizer on PTB, lr 0.01 to 0.001, batches of 4) with ``values`` on top."""
    return toml_table("train", **{**dict(data="ptb", tokenizer="word", batch_size=4, lr=0.01, min_lr=0.001), **values})


def fake_registry(tmp_path: Path, monkeypatch) -> FakeRegistry:
    """A fake registry under ``tmp_path``; training runs as one process (WORLD_SIZE unset)."""
    registry = FakeRegistry(tmp_path, monkeypatch)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return registry


def fake_ptb(tmp_path: Path, monkeypatch, config: str | None = None) -> Path | None:
    """Build the fake Penn Treebank; with ``config`` (TOML text), write it to ``tmp_path/micro.toml`` and return its path."""
    registry = fake_registry(tmp_path, monkeypatch)
    registry.publish("treebank", {"treebank/__init__.py": penn()})
    build(DATASETS["ptb"], registry.root, downloader=registry)
    if config is None:
        return None
    path = tmp_path / "micro.toml"
    path.write_text(config)
    return path


def run_killed_at(trainer, step: int) -> None:
    """Run ``trainer`` and kill it (KeyboardInterrupt) as it starts step ``step`` (1-based), as Ctrl-C would."""
    import pytest

    original = trainer.train_step

    def dies():
        if trainer.step == step - 1:
            raise KeyboardInterrupt
        return original()

    trainer.train_step = dies
    with pytest.raises(KeyboardInterrupt):
        trainer.run(progress=False)
