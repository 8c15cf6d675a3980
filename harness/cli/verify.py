"""``snnbench verify``: the spiking core's exactness checks and SNNSiLU's error (``harness/verify.py``)."""

from __future__ import annotations

import argparse

from tasks.files import atomic_write_json

from .common import add_out, positive_int


def add_parser(commands) -> None:
    p = commands.add_parser("verify", help="check the spiking core's exactness and print SNNSiLU's error")
    p.add_argument("--time-steps", type=positive_int, default=127, help="T for the operator checks (1..127)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random operands")
    add_out(p, "results/verify", "verify.json, the figures")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness import verify

    path = verify.check_arguments(args.time_steps, args.out)
    result = verify.run_checks(args.time_steps, args.seed)
    print("snnbench verify: exactness of the spiking core (max |difference| must be 0)\n")
    width = max(len(c.name) for c in result.checks)
    for c in result.checks:
        status = "ok" if c.passed else "FAIL"
        counters = "" if c.counters_equal is None else ("  counters equal" if c.counters_equal else "  counters DIFFER")
        print(f"  {status:4}  {c.name:<{width}}  max|diff|={c.max_abs_diff:<10.3g} {c.detail}{counters}")
    print("\nSNNSiLU (two fitted neurons) vs SiLU on [-8, 8]:")
    for row in result.silu:
        print(f"  T={row['time_steps']:<4} max |error| = {row['max_abs_error']:.4f}   mean |error| = {row['mean_abs_error']:.4f}")
    print(f"\n{len(result.checks) - len(result.failed)} of {len(result.checks)} checks passed in {result.seconds:.1f} s")
    print(f"wrote {atomic_write_json(path, result.as_dict())}")
    return 1 if result.failed else 0
