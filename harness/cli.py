"""The ``snnbench`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnbench",
        description="Benchmark and energy-evaluation harness for spiking-neural-network language models.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="check the spiking core's exactness and print SNNSiLU's error")
    verify.add_argument("--time-steps", type=_positive_int, default=127, help="T for the operator checks (1..127, default 127)")
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument("--out", default="results/verify/verify.json", help="JSON file for the figures")

    data = commands.add_parser("data", help="fetch and list the offline data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    data_dir_help = "data folder (default: $SNNBENCH_DATA or ~/.cache/snnbench)"
    fetch = data_commands.add_parser("fetch", help="download, verify and build data sets (all non-optional ones by default)")
    fetch.add_argument("names", nargs="*", help="data sets to build (see `snnbench data list`)")
    fetch.add_argument("--data-dir", help=data_dir_help)
    fetch.add_argument("--force", action="store_true", help="rebuild even if present")
    fetch.add_argument("--all", action="store_true", help="include optional sets")
    listing = data_commands.add_parser("list", help="show each data set, its record counts and whether it is present")
    listing.add_argument("--data-dir", help=data_dir_help)

    from .convert_cli import add_parser as add_convert
    from .eval_cli import add_parser as add_eval
    from .ablate import add_parser as add_ablate
    from .bench_cli import add_parser as add_bench
    from .braingpt_cli import add_parser as add_braingpt
    from .demo import add_parser as add_demo
    from .reproduce import add_parser as add_reproduce
    from .report_cli import add_parser as add_report
    from .neurtransformer_cli import add_parser as add_neurtransformer
    from .stdp_cli import add_parser as add_stdp
    from .train_cli import add_parser as add_train

    add_convert(commands)
    add_eval(commands)
    add_train(commands)
    add_stdp(commands)
    add_neurtransformer(commands)
    add_report(commands)
    add_ablate(commands)
    add_reproduce(commands)
    add_bench(commands)
    add_braingpt(commands)
    add_demo(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .allocator import tune_allocator

    tune_allocator()
    try:
        if args.command == "verify":
            from .verify import run_verify

            return run_verify(args.time_steps, args.seed, args.out)
        if args.command == "data":
            from . import data_cli

            if args.data_command == "fetch":
                return data_cli.fetch(args.names, args.data_dir, args.force, args.all)
            return data_cli.list_sets(args.data_dir)
        if args.command == "convert":
            from .convert_cli import run_convert

            return run_convert(args)
        if args.command == "eval":
            from .eval_cli import run_eval

            return run_eval(args)
        if args.command == "train":
            from .train_cli import run_train

            return run_train(args)
        if args.command == "stdp":
            from .stdp_cli import run_stdp

            return run_stdp(args)
        if args.command == "neurtransformer":
            from .neurtransformer_cli import run_neurtransformer_cli

            return run_neurtransformer_cli(args)
        if args.command == "report":
            from .report_cli import run_report

            return run_report(args)
        if args.command == "ablate":
            from .ablate import run_ablate

            return run_ablate(args)
        if args.command == "reproduce":
            from .reproduce import run_reproduce

            return run_reproduce(args)
        if args.command == "braingpt-ablate":
            from .braingpt_cli import run_braingpt_ablate

            return run_braingpt_ablate(args)
        if args.command == "bench":
            from .bench_cli import run_bench_command

            return run_bench_command(args)
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args)
    except ValueError as err:  # a user mistake or bad input: what is wrong and how to fix it
        print(f"snnbench {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"snnbench {args.command}: interrupted; finished work is kept, run the command again to resume", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - nothing reaches the user as a traceback
        from models.train.qat import TrainingError

        if isinstance(err, TrainingError):  # e.g. a NaN loss; the last good checkpoint is kept
            print(f"snnbench {args.command}: stopped: {one_line(err)}", file=sys.stderr)
            return 3
        log = crash_log(args.command)
        if isinstance(err, OSError):  # disk full, permissions, a file vanished: the system's words and the file
            where = f" ({err.filename})" if err.filename else ""
            print(f"snnbench {args.command}: error: {err.strerror or type(err).__name__}{where}; traceback in {log}", file=sys.stderr)
            return 2
        print(f"snnbench {args.command}: internal error: {type(err).__name__}: {one_line(err)}; traceback in {log} "
              "(please report it with that file)", file=sys.stderr)
        return 1
    return 0


def one_line(err: BaseException) -> str:
    """An exception's message on one line (some libraries' messages span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def crash_log(command: str) -> Path:
    """Write the current exception's traceback to a log file and return its path.

    The folder is ``$SNNBENCH_LOG_DIR``, else ``<data folder>/logs``, else the system's temporary folder.
    """
    import tempfile
    import time
    import traceback

    from tasks.fetch import data_dir

    text = f"snnbench {command} ({' '.join(sys.argv)})\n{traceback.format_exc()}"
    name = f"crash-{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    folders = [Path(os.environ["SNNBENCH_LOG_DIR"])] if os.environ.get("SNNBENCH_LOG_DIR") else []
    for folder in [*folders, data_dir() / "logs", Path(tempfile.gettempdir()) / "snnbench-logs"]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
            return folder / name
        except OSError:
            continue
    return Path("(no writable folder for the log)")


if __name__ == "__main__":
    sys.exit(main())
