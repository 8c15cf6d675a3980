"""``snnbench train``: stage 1, an architecture trained from a config file, or a pretrained model fine-tuned
quantization-aware with distillation (``--init``; ``harness/stages/training.py``)."""

from __future__ import annotations

import argparse

from .common import CommaSeparated, add_training_run_flags, say


def add_parser(commands) -> None:
    p = commands.add_parser("train", help="stage 1: train an architecture (ann or qat) from a config file, or fine-tune a pretrained model (qat)")
    p.add_argument("--arch", default=None, help="train from scratch: llama, gpt2, mamba2, ttt, braingpt (models/arch/registry.py)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="fine-tune this pretrained float model quantization-aware, distilled from itself (registry name or folder); "
                        "its config: finetune (the default), finetune-lowbit at 6 bits and below")
    p.add_argument("--mode", default="qat", choices=["ann", "qat"], help="float training (ann) or quantization-aware (qat, stage 1)")
    p.add_argument("--config", default=None,
                   help="a config name in models/train/configs (tiny, braingpt-150m, finetune, finetune-lowbit) or a .toml path "
                        "(default: tiny, or finetune with --init)")
    p.add_argument("--data", default=None, help="corpus (overrides the config): ptb, shakespeare, webtext, brown ...")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default: the config's)")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (overrides the config; below --max-steps)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per step (default: the config's)")
    p.add_argument("--seed", type=int, default=None, help="seed of initialization and batches (default: the config's)")
    p.add_argument("--bits", type=int, default=8, help="bit width of qat mode (T = 2^(bits-1) - 1)")
    p.add_argument("--granularity", default=None, choices=["token", "smoothed", "channel", "tensor"],
                   help="activation scales of linear layers and norms (default token; smoothed, as snnbench convert, with --init)")
    p.add_argument("--keep-float", action=CommaSeparated, default=None, help="operator kinds kept float in qat mode (ablation), comma-separated, e.g. softmax,silu")
    add_training_run_flags(p, None, "start over instead of resuming the checkpoint in --out")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.stages.training import train

    training = train(args, say)
    if training.rank != 0:
        return 0
    result, summary, out = training.result, training.summary, training.out
    if args.init:
        print(f"\n{args.init} fine-tuned at {args.bits} bits: KL to the float model {summary['valid_kl_to_teacher']:.4f} nats/token (valid)")
    print(f"\n{args.arch or args.init} {args.mode}: test perplexity {result.test_perplexity:.2f} (valid {result.valid_perplexity:.2f}) "
          f"after {result.steps} steps, {result.seconds:.0f} s, {result.tokens_per_second:,.0f} tokens/s")
    if args.mode == "qat":
        print(f"converted to SNN (snn-fused): test perplexity {summary['snn_fused_test_perplexity']:.2f} "
              f"({'equal to' if summary['snn_equals_qat'] else 'DIFFERENT from'} the QAT model)")
    print(f"wrote {out}/summary.json, {out}/log.jsonl, {out}/checkpoint")
    return 0
