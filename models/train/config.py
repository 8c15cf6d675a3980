"""Training configurations, read from TOML files in ``models/train/configs/`` (or any path).

A file has a ``[train]`` table (TrainConfig) and one ``[model.<arch>]`` table per architecture
it supports, with that architecture's config fields (``snnbench train --arch llama --config
tiny`` uses ``[model.llama]`` of ``tiny.toml``). Bad values are one-line errors naming the file
and the key.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from models.fields import check_fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_DIR = Path(__file__).with_name("configs")
T = TypeVar("T")


@dataclass(frozen=True)
class TrainConfig:
    data: str = "ptb"
    tokenizer: str = "word"  # word | bpe | gpt2
    vocab_size: int | None = None  # for a trained bpe tokenizer
    seq_len: int = 128
    batch_size: int = 32  # global batch, in sequences per optimizer step (across processes and accumulation)
    grad_accum: int = 1
    max_steps: int = 1000
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 100
    restart_period: int = 0  # cosine annealing with warm restarts: steps of the first cycle (0: one cycle)
    restart_mult: int = 1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_interval: int = 200
    eval_tokens: int = 16384
    eval_stride: int = 64
    checkpoint_interval: int = 200
    seed: int = 1234
    precision: str = "auto"  # auto (bf16 autocast on CUDA when supported) | fp32 | bf16
    test_tokens: int = 0  # tokens of the test split the final perplexity reads (0: all of it)
    # fine-tuning a pretrained model (snnbench train --init; models/train/finetune.py)
    distill: float = 0.0  # weight of KL(teacher || student) in the loss; 1 - distill weighs the next-token loss
    distill_temperature: float = 1.0
    learn_quantizers: bool = False  # the dynamic scales' clips and the smoothing factors learn too
    quantizer_lr: float = 0.0  # their peak learning rate (0: lr), on the same schedule
    scales_only_steps: int = 0  # the first steps train only quantizer parameters and 1-D parameters (norms, biases)
    calibration_tokens: int = 1024  # train-split tokens that calibrate the QAT model before fine-tuning

    def __post_init__(self) -> None:
        check_fields(
            self,
            positive_int=("seq_len", "batch_size", "grad_accum", "max_steps", "eval_interval", "eval_tokens", "eval_stride", "checkpoint_interval",
                          "calibration_tokens"),
            non_negative_int=("test_tokens", "scales_only_steps"),
            non_negative=("lr", "min_lr", "weight_decay", "grad_clip", "quantizer_lr"),
            positive=("distill_temperature",),
            flag=("learn_quantizers",),
            choices={"tokenizer": ("word", "bpe", "gpt2"), "precision": ("auto", "fp32", "bf16")},
        )
        if self.lr == 0:
            raise ValueError("lr must be > 0")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError(f"warmup_steps must be in 0..max_steps-1, got {self.warmup_steps}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of grad_accum ({self.grad_accum})")
        if not 0 <= self.distill <= 1:
            raise ValueError(f"distill must be in [0, 1] (the KL term's weight), got {self.distill}")
        if self.calibration_tokens < self.seq_len:
            raise ValueError(f"calibration_tokens ({self.calibration_tokens}) must cover one sequence of seq_len {self.seq_len}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    return CONFIG_DIR / f"{name_or_path}.toml"


def read_toml(name_or_path: str, what: str = "config") -> tuple[Path, dict[str, Any]]:
    """(path, contents) of a config name in ``configs/`` or a .toml path; one-line errors for a missing or invalid file."""
    path = config_path(name_or_path)
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(CONFIG_DIR.glob("*.toml")))
        raise ValueError(f"no {what} {name_or_path!r} ({path} does not exist); known: {known}")
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None


def table_config(cls: type[T], data: dict[str, Any], table: str, path: Path, overrides: dict[str, Any] | None = None) -> T:
    """The dataclass ``cls`` from the ``[table]`` of a TOML file's ``data``, ``overrides`` (None values skipped) on top;
    one-line errors naming the file and the key."""
    values = dict(data.get(table, {}))
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{path}: [{table}] has unknown keys {unknown}")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def load_config(name_or_path: str, arch: str | None, overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """(TrainConfig, the architecture's model fields) from a config file; ``overrides`` replace train keys.
    ``arch`` None (fine-tuning a pretrained model, whose architecture is its own): only the ``[train]`` table, no fields."""
    path, data = read_toml(name_or_path, "training config")
    config = table_config(TrainConfig, data, "train", path, overrides)
    if arch is None:
        return config, {}
    models = data.get("model", {})
    if arch not in models:
        raise ValueError(f"{path}: has no [model.{arch}] table; it configures {', '.join(models) or 'no architecture'}")
    return config, dict(models[arch])
