"""Stage 1: training an architecture from a config file on a corpus (``snnbench train``), or fine-tuning a
pretrained model quantization-aware with distillation from its float self (``--init``).

    snnbench train --arch llama --mode qat --config tiny --data ptb
    torchrun --nproc_per_node 2 $(which snnbench) train --arch llama --mode qat --config tiny
    snnbench train --init smollm2-135m --mode qat --bits 6 --config finetune

Writes ``results/train/<arch>-<mode>-<config>-<data>/``: ``checkpoint/`` (a loadable model plus
optimizer state; a re-run resumes from it), ``log.jsonl`` (loss, learning rate, tokens/s,
validation perplexity) and ``summary.json`` (test and validation perplexity, time, tokens/s).
A QAT run is then converted to the SNN (an operator swap) and its test perplexity measured too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.arch.registry import ARCHITECTURES
from models.arch.spiking_config import SpikingConfig
from models.convert import swap_mode
from models.spiking.checks import check_bits
from models.train.config import TrainConfig, load_config
from models.load import load_model
from models.train.finetune import FineTuner
from models.train.trainer import SUMMARY, TrainResult, Trainer
from tasks.builders.tokenizers import check_corpus
from tasks.fetch import use_data_dir
from tasks.files import atomic_write_json, check_writable


@dataclass
class Training:
    """A finished training run: its result, its summary (``summary.json``; empty off rank 0), where, and on which rank."""

    result: TrainResult
    summary: dict[str, Any]
    out: Path
    rank: int


def check_flags(args: argparse.Namespace) -> None:
    """One-line errors for bad flags, before any config, corpus or model is read."""
    if args.init is not None:
        if args.arch is not None:
            raise ValueError(f"--arch and --init exclude each other: a fine-tuning keeps the architecture of {args.init}; drop --arch")
        if args.mode != "qat":
            raise ValueError(f"--init fine-tunes quantization-aware (--mode qat); the float model {args.init} is its own ANN")
    elif args.arch is None:
        raise ValueError("give --arch ARCH to train from scratch, or --init MODEL to fine-tune a pretrained model")
    elif args.arch not in ARCHITECTURES:
        raise ValueError(f"--arch {args.arch!r} is unknown; known architectures: {', '.join(ARCHITECTURES)}")
    check_bits(args.bits, "--bits")
    for flag, value, minimum in (("--batch-size", args.batch_size, 1), ("--max-steps", args.max_steps, 1), ("--warmup-steps", args.warmup_steps, 0)):
        if value is not None and value < minimum:
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")


def train_config(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """(TrainConfig, model fields) of ``--config`` with the flags' overrides.

    A ``--max-steps`` at or below the config's own warm-up is refused with the flag that fixes it.
    """
    overrides = {"data": args.data, "max_steps": args.max_steps, "warmup_steps": args.warmup_steps, "seed": args.seed, "batch_size": args.batch_size}
    if args.max_steps is not None and args.warmup_steps is None:
        file_config, _ = load_config(args.config, args.arch, {**overrides, "max_steps": None})
        if file_config.warmup_steps >= args.max_steps:
            raise ValueError(
                f"--max-steps {args.max_steps} leaves no room for the {file_config.warmup_steps} warm-up steps of config "
                f"{args.config!r}; add --warmup-steps N with N < {args.max_steps} (e.g. --warmup-steps {args.max_steps // 10})"
            )
    return load_config(args.config, args.arch, overrides)


def default_out(args: argparse.Namespace, config: TrainConfig) -> str:
    if args.init is not None:
        return f"results/train/{Path(args.init).name}-qat-b{args.bits}-{Path(args.config).stem}-{config.data}"
    return f"results/train/{args.arch}-{args.mode}-{Path(args.config).stem}-{config.data}"


def fine_tuner(args: argparse.Namespace, config: TrainConfig, out: Path, spiking: SpikingConfig) -> FineTuner:
    """The FineTuner of ``--init``: the float model loaded and named by its files' sha256 (FineTuner checks it is float)."""
    from harness.evaluation.identity import model_identity

    loaded = load_model(args.init)
    return FineTuner(loaded, model_identity(loaded.source, loaded.name), config, out, spiking, device=args.device)


def train(args: argparse.Namespace, say: Callable[[str], None]) -> Training:
    """Every flag, the config and --out checked first, then train, evaluate and (qat) convert; progress (rank 0) to ``say``."""
    check_flags(args)
    args.config = args.config or ("finetune" if args.init else "tiny")
    args.granularity = args.granularity or ("smoothed" if args.init else "token")
    spiking = SpikingConfig(bits=args.bits, keep_float=tuple(args.keep_float or ()),
                            linear_granularity=args.granularity, norm_granularity=args.granularity)
    config, fields = train_config(args)
    out = check_writable(args.out or default_out(args, config), "--out")
    use_data_dir(args.data_dir)
    if args.init is not None:
        check_corpus(config.data, ("train", "valid", "test"))  # before the model is loaded
        trainer: Trainer = fine_tuner(args, config, out, spiking)
        what = f"fine-tuning {trainer.init.name} ({trainer.model.num_parameters():,} parameters) quantization-aware at {args.bits} bits (T={spiking.T})"
    else:
        trainer = Trainer(args.arch, args.mode, config, fields, out, device=args.device, spiking=spiking, name=f"{args.arch}-{args.mode}")
        what = f"training {args.arch} ({trainer.model.num_parameters():,} parameters) in mode {args.mode}"
    if trainer.rank == 0:
        say(f"{what} on {config.data}: {config.max_steps} steps of {config.batch_size} x {config.seq_len} tokens, "
            f"{trainer.world} process(es) -> {out}")
    result = trainer.run(fresh=args.fresh)
    summary = json.loads((out / SUMMARY).read_text()) if trainer.rank == 0 else {}
    if args.mode == "qat":
        snn = swap_mode(trainer.model, trainer.model.spiking.with_mode("snn-fused"))
        trainer.model = snn
        snn_ppl = trainer.perplexity(trainer.test_stream())
        if trainer.rank == 0:
            summary["snn_fused_test_perplexity"] = snn_ppl
            summary["snn_equals_qat"] = snn_ppl == result.test_perplexity
            atomic_write_json(out / SUMMARY, summary)
    return Training(result, summary, out, trainer.rank)
