"""``snnbench convert``: stage 2 on a pretrained model, with its audit and a perplexity check (``harness/stages/conversion.py``)."""

from __future__ import annotations

import argparse

from .common import CODINGS, CommaSeparated, add_data_dir, add_device, add_out, say


def add_parser(commands) -> None:
    p = commands.add_parser("convert", help="stage 2: convert a pretrained model to an SNN, audit it, check its perplexity")
    p.add_argument("--model", required=True, help="registry name (smollm2-135m), checkpoint folder or .gguf file")
    p.add_argument("--bits", type=int, default=8, help="bit width: T <= 2^(bits-1) - 1 time steps")
    p.add_argument("--time-steps", type=int, default=None, help="time steps T (default: the largest the bit width allows)")
    p.add_argument("--granularity", default="smoothed", choices=["token", "smoothed", "channel", "tensor"], help="activation scales of linear layers and norms")
    p.add_argument("--coding", default="rate", choices=CODINGS,
                   help="spike coding of the SNN's neurons: rate (T steps), bitwise (ceil(log2(T+1)) binary digits) or multilevel "
                        "(one graded spike); the same outputs, other spikes and time steps; saved with the model")
    p.add_argument("--kind-bits", action=CommaSeparated, metavar="KIND=BITS", help="a bit width (so more time steps) for some operator kinds, comma-separated, e.g. multiply=10")
    p.add_argument("--calibration-data", default="webtext", help="corpus whose train split calibrates")
    p.add_argument("--calibration-tokens", type=int, default=1024, help="tokens of calibration text")
    p.add_argument("--eval-data", default="wikitext", help="corpus for the perplexity check")
    p.add_argument("--eval-split", default="test", help="its split")
    p.add_argument("--eval-tokens", type=int, default=2048, help="tokens of it")
    p.add_argument("--window", type=int, default=256, help="context window in tokens")
    p.add_argument("--audit-windows", type=int, default=1, help="windows the per-layer audit compares")
    add_device(p)
    add_out(p, None, "model/, audit.json, audit.txt, convert.json (default: results/convert/<model>-b<bits>-T<T>)")
    add_data_dir(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.stages import conversion

    result = conversion.convert_pretrained(args, conversion.plan_conversion(args), say)
    summary, out = result.summary, result.out
    print(f"\nSNN vs ANN perplexity: {100 * summary['snn_vs_ann_perplexity_change']:+.2f}%  (QAT == SNN: {summary['qat_equals_snn']})")
    print(f"spiking coverage: {100 * summary['spiking_coverage']:.1f}% of operations are spike-driven accumulations")
    print("operators with the largest relative error against the float model:")
    print(result.table)
    print(f"\nwrote {out}/model, {out}/audit.txt, {out}/audit.json, {out}/convert.json in {summary['seconds']:.0f} s")
    return 0
