"""``snnbench train``: stage-1 training of an architecture from a config file on a corpus.

    snnbench train --arch llama --mode qat --config tiny --data ptb
    torchrun --nproc_per_node 2 $(which snnbench) train --arch llama --mode qat --config tiny

Writes ``results/train/<arch>-<mode>-<config>-<data>/``: ``checkpoint/`` (a loadable model plus
optimizer state; a re-run resumes from it), ``log.jsonl`` (loss, learning rate, tokens/s,
validation perplexity) and ``summary.json`` (test and validation perplexity, time, tokens/s).
A QAT run is then converted to the SNN (an operator swap) and its test perplexity measured too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.files import check_writable

from .data_cli import use_data_dir

if TYPE_CHECKING:
    from models.train.config import TrainConfig


def check_flags(args: argparse.Namespace) -> None:
    """One-line errors for bad flags, before any config, corpus or model is read."""
    from models.arch.registry import ARCHITECTURES
    from models.spiking.checks import check_bits

    if args.arch not in ARCHITECTURES:
        raise ValueError(f"--arch {args.arch!r} is unknown; known architectures: {', '.join(ARCHITECTURES)}")
    check_bits(args.bits, "--bits")
    for flag, value, minimum in (("--batch-size", args.batch_size, 1), ("--max-steps", args.max_steps, 1), ("--warmup-steps", args.warmup_steps, 0)):
        if value is not None and value < minimum:
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")


def train_config(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """(TrainConfig, model fields) of ``--config`` with the flags' overrides.

    A ``--max-steps`` at or below the config's own warm-up is refused with the flag that fixes it.
    """
    from models.train.config import load_config

    overrides = {"data": args.data, "max_steps": args.max_steps, "warmup_steps": args.warmup_steps, "seed": args.seed, "batch_size": args.batch_size}
    if args.max_steps is not None and args.warmup_steps is None:
        file_config, _ = load_config(args.config, args.arch, {**overrides, "max_steps": None})
        if file_config.warmup_steps >= args.max_steps:
            raise ValueError(
                f"--max-steps {args.max_steps} leaves no room for the {file_config.warmup_steps} warm-up steps of config "
                f"{args.config!r}; add --warmup-steps N with N < {args.max_steps} (e.g. --warmup-steps {args.max_steps // 10})"
            )
    return load_config(args.config, args.arch, overrides)


def run_train(args: argparse.Namespace) -> int:
    """``snnbench train``: every flag, the config and --out checked first, then train, evaluate and (qat) convert."""
    from models.arch.spiking_config import SpikingConfig
    from models.convert import swap_mode
    from models.train.data import token_stream
    from models.train.qat import SUMMARY, Trainer

    check_flags(args)
    spiking = SpikingConfig(bits=args.bits, keep_float=tuple(args.keep_float or ()))
    config, fields = train_config(args)
    out = check_writable(args.out or f"results/train/{args.arch}-{args.mode}-{Path(args.config).stem}-{config.data}", "--out")
    use_data_dir(args.data_dir)
    trainer = Trainer(args.arch, args.mode, config, fields, out, device=args.device, spiking=spiking, name=f"{args.arch}-{args.mode}")
    if trainer.rank == 0:
        print(f"training {args.arch} ({trainer.model.num_parameters():,} parameters) in mode {args.mode} on {config.data}: "
              f"{config.max_steps} steps of {config.batch_size} x {config.seq_len} tokens, {trainer.world} process(es) -> {out}")
    result = trainer.run(fresh=args.fresh)
    summary = json.loads((out / SUMMARY).read_text()) if trainer.rank == 0 else {}
    if args.mode == "qat":
        snn = swap_mode(trainer.model, trainer.model.spiking.with_mode("snn-fused"))
        trainer.model = snn
        snn_ppl = trainer.perplexity(token_stream(trainer.tokenizer, config.data, "test"))
        if trainer.rank == 0:
            summary["snn_fused_test_perplexity"] = snn_ppl
            summary["snn_equals_qat"] = snn_ppl == result.test_perplexity
            from .runs import atomic_write_json

            atomic_write_json(out / SUMMARY, summary)
    if trainer.rank == 0:
        print(f"\n{args.arch} {args.mode}: test perplexity {result.test_perplexity:.2f} (valid {result.valid_perplexity:.2f}) "
              f"after {result.steps} steps, {result.seconds:.0f} s, {result.tokens_per_second:,.0f} tokens/s")
        if args.mode == "qat":
            print(f"converted to SNN (snn-fused): test perplexity {summary['snn_fused_test_perplexity']:.2f} "
                  f"({'equal to' if summary['snn_equals_qat'] else 'DIFFERENT from'} the QAT model)")
        print(f"wrote {out}/summary.json, {out}/log.jsonl, {out}/checkpoint")
    return 0


def add_parser(commands) -> None:
    p = commands.add_parser("train", help="stage 1: train an architecture (ann or qat) from a config file")
    p.add_argument("--arch", required=True, help="llama, mamba2, ttt (models/arch/registry.py)")
    p.add_argument("--mode", default="qat", choices=["ann", "qat"])
    p.add_argument("--config", default="tiny", help="a config name in models/train/configs (tiny, braingpt-150m) or a .toml path")
    p.add_argument("--data", default=None, help="corpus (overrides the config): ptb, shakespeare, webtext, brown ...")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (overrides the config; below --max-steps)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--keep-float", nargs="*", help="operator kinds kept float in qat mode (ablation)")
    p.add_argument("--out", default=None)
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming the checkpoint in --out")
    p.add_argument("--device", default=None)
    p.add_argument("--data-dir", default=None)
