"""``snnbench convert``: ANN -> QAT -> SNN for a pretrained model, with its audit and a perplexity check.

Writes to ``--out`` (default ``results/convert/<model>-b<bits>-T<T>``):
- ``model/``: the converted model (safetensors + config.json + tokenizer.json), loadable with
  ``--model <that folder>``;
- ``audit.json`` / ``audit.txt``: the per-layer audit;
- ``convert.json``: settings, perplexities (ANN, QAT, SNN) on the evaluation text, the spiking
  coverage, the worst layers and the wall time.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from models.arch.llama import spiking_coverage
from models.arch.spiking_config import OPERATOR_KINDS, SpikingConfig
from models.audit import audit_conversion, audit_table, worst_layers, write_audit
from models.convert import convert
from models.load import load_model, save_checkpoint
from models.perplexity import token_perplexity
from models.spiking.checks import check_bits, check_time_steps, max_level
from models.spiking.counters import OpCounter
from tasks.files import check_writable

from .data_cli import use_data_dir
from .runs import atomic_write_json


def text_ids(tokenizer, data_set: str, split: str, tokens: int) -> list[int]:
    """The first ``tokens`` token ids of a built corpus split."""
    from tasks.builders.tokenizers import corpus_lines

    lines, ids = corpus_lines(data_set, split), []
    for line in lines:
        ids.extend(tokenizer.encode(line + "\n").ids)
        if len(ids) >= tokens:
            break
    if len(ids) < tokens:
        raise ValueError(f"corpus '{data_set}' split '{split}' has only {len(ids)} tokens, {tokens} asked for")
    return ids[:tokens]


def parse_kind_bits(items: list[str] | None) -> dict[str, int]:
    """``["multiply=10", "silu=9"]`` -> {"multiply": 10, "silu": 9}; one-line errors for bad kinds or bit widths."""
    out = {}
    for item in items or []:
        kind, _, bits = (part.strip() for part in item.partition("="))
        if not bits.isdigit():
            raise ValueError(f"--kind-bits expects KIND=BITS (e.g. multiply=10), got {item!r}")
        if kind not in OPERATOR_KINDS:
            raise ValueError(f"--kind-bits {item!r}: unknown operator kind {kind!r}; known: {', '.join(OPERATOR_KINDS)}")
        out[kind] = check_bits(int(bits), f"--kind-bits {kind}")
    return out


def spiking_config(args: argparse.Namespace) -> SpikingConfig:
    """The conversion's SpikingConfig from the flags, each checked with a one-line error naming it."""
    check_bits(args.bits, "--bits")
    if args.time_steps is not None:
        check_time_steps(args.time_steps, "--time-steps", upper=max_level(args.bits))
    return SpikingConfig(
        bits=args.bits,
        time_steps=args.time_steps,
        linear_granularity=args.granularity,
        norm_granularity=args.granularity,
        kind_bits=parse_kind_bits(args.kind_bits),
    )


def check_lengths(args: argparse.Namespace) -> None:
    """--window, --audit-windows and the token counts: enough text for at least one window each."""
    if args.window < 2:
        raise ValueError(f"--window must be >= 2, got {args.window}")
    if args.audit_windows < 1:
        raise ValueError(f"--audit-windows must be >= 1, got {args.audit_windows}")
    for flag, tokens in (("--calibration-tokens", args.calibration_tokens), ("--eval-tokens", args.eval_tokens)):
        if tokens < args.window:
            raise ValueError(f"{flag} {tokens} is less than one --window of {args.window} tokens; raise {flag} or lower --window")


def windows(ids: list[int], window: int, batch_size: int) -> list[torch.Tensor]:
    n = len(ids) // window
    chunks = torch.tensor(ids[: n * window]).view(n, window)
    return [chunks[i : i + batch_size] for i in range(0, n, batch_size)]


def run_convert(args: argparse.Namespace) -> int:
    """``snnbench convert``: every flag and --out checked first, then convert, measure, audit and save."""
    spiking = spiking_config(args)
    check_lengths(args)
    out = check_writable(args.out or f"results/convert/{Path(args.model).name}-b{args.bits}-T{spiking.T}", "--out")
    use_data_dir(args.data_dir)
    started = time.perf_counter()
    loaded = load_model(args.model)
    if loaded.tokenizer is None:
        raise ValueError(f"model {args.model!r} has no tokenizer to read the calibration text with")
    print(f"converting {loaded.name} ({loaded.model.num_parameters():,} parameters) at {args.bits} bits, T={spiking.T}, {args.granularity} scales")
    calibration = text_ids(loaded.tokenizer, args.calibration_data, "train", args.calibration_tokens)
    conversion = convert(loaded.model, windows(calibration, args.window, 2), spiking)
    evaluation = text_ids(loaded.tokenizer, args.eval_data, args.eval_split, args.eval_tokens)
    perplexity = {}
    for name, model in (("ann", loaded.model), ("qat", conversion.qat), ("snn-fused", conversion.snn)):
        perplexity[name] = token_perplexity(model, evaluation, window=args.window, desc=f"perplexity {name}")
        print(f"  perplexity {name:<9} {perplexity[name]['perplexity']:.3f} over {perplexity[name]['tokens']} tokens of {args.eval_data}/{args.eval_split}")
    audit_ids = windows(evaluation, args.window, 1)[: args.audit_windows]
    rows = audit_conversion(loaded.model, conversion.snn, audit_ids)
    with OpCounter(conversion.snn) as counter, torch.no_grad():
        conversion.snn(audit_ids[0])
    coverage = spiking_coverage(counter.total())
    ann_ppl, snn_ppl = perplexity["ann"]["perplexity"], perplexity["snn-fused"]["perplexity"]
    summary = {
        "model": loaded.name,
        "source": loaded.source,
        "spiking": conversion.snn.spiking.to_dict(),
        "calibration": {"data": args.calibration_data, "tokens": len(calibration)},
        "evaluation": {"data": args.eval_data, "split": args.eval_split, "window": args.window},
        "perplexity": perplexity,
        "snn_vs_ann_perplexity_change": snn_ppl / ann_ppl - 1,
        "qat_equals_snn": math.isclose(perplexity["qat"]["nll"], perplexity["snn-fused"]["nll"], rel_tol=0, abs_tol=0),
        "spiking_coverage": coverage,
        "worst_layers": [r.name for r in worst_layers(rows)],
        "seconds": time.perf_counter() - started,
    }
    save_checkpoint(conversion.snn, out / "model", loaded.tokenizer, extra={"name": f"{loaded.name}-snn", "converted": summary}, special_tokens=loaded.special_tokens())
    write_audit(rows, out, extra={"model": loaded.name})
    atomic_write_json(out / "convert.json", summary)
    print(f"\nSNN vs ANN perplexity: {100 * summary['snn_vs_ann_perplexity_change']:+.2f}%  (QAT == SNN: {summary['qat_equals_snn']})")
    print(f"spiking coverage: {100 * coverage:.1f}% of operations are spike-driven accumulations")
    print("operators with the largest relative error against the float model:")
    print(audit_table(worst_layers(rows)))
    print(f"\nwrote {out}/model, {out}/audit.txt, {out}/audit.json, {out}/convert.json in {summary['seconds']:.0f} s")
    return 0


def add_parser(commands) -> None:
    p = commands.add_parser("convert", help="stage 2: convert a pretrained model to an SNN, audit it, check its perplexity")
    p.add_argument("--model", required=True, help="registry name (smollm2-135m), checkpoint folder or .gguf file")
    p.add_argument("--bits", type=int, default=8, help="bit width: T <= 2^(bits-1) - 1 time steps (default 8)")
    p.add_argument("--time-steps", type=int, default=None, help="time steps T (default: the largest the bit width allows)")
    p.add_argument("--granularity", default="smoothed", choices=["token", "smoothed", "channel", "tensor"], help="activation scales of linear layers and norms (default smoothed)")
    p.add_argument("--kind-bits", nargs="*", metavar="KIND=BITS", help="a bit width (so more time steps) for some operator kinds, e.g. multiply=10")
    p.add_argument("--calibration-data", default="webtext", help="corpus whose train split calibrates (default webtext)")
    p.add_argument("--calibration-tokens", type=int, default=1024)
    p.add_argument("--eval-data", default="wikitext", help="corpus for the perplexity check (default wikitext)")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--eval-tokens", type=int, default=2048)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--audit-windows", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--data-dir", default=None)
