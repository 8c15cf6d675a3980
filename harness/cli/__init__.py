"""The ``snnbench`` command line: one module per command, each with ``add_parser(commands)`` (its flags and
``set_defaults(handler=...)``) and its handler, which parses and prints while the work lives in library modules.

Each handler imports its implementation when it runs, not when the parser is built, so ``snnbench --help``
and the flag checks of argparse stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from models.train.errors import TrainingError
from tasks.fetch import data_dir

from ..allocator import tune_allocator
from . import ablate, bench, braingpt_ablate, compare, convert, data, demo, energy, evaluate, export, frontier, lm_eval_cmd, neurtransformer, report, reproduce, stdp, train, verify

COMMANDS = (verify, data, convert, export, evaluate, lm_eval_cmd, compare, train, stdp, frontier, energy, neurtransformer, report, ablate, reproduce, bench, braingpt_ablate, demo)


class DefaultsShown(argparse.HelpFormatter):
    """Each flag's help ends with its default, unless the help already says it or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == argparse.SUPPRESS  # 0 is a default to show
        if "default" in text or nothing or action.required or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """The parser of every command: flags' defaults shown in their help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["formatter_class"] = DefaultsShown
        super().__init__(*args, **kwargs)


def version() -> str:
    """snnbench's installed version (the source tree's when it is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("snnbench")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnbench",
        description="Benchmark and energy-evaluation harness for spiking-neural-network language models.",
    )
    parser.add_argument("--version", action="version", version=f"snnbench {version()}")
    parser.set_defaults(snnbench=main)  # how a command runs other commands (the demo's steps)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_allocator()
    try:
        return args.handler(args)
    except ValueError as err:  # a user mistake or bad input: what is wrong and how to fix it
        print(f"snnbench {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"snnbench {args.command}: interrupted; finished work is kept, run the command again to resume", file=sys.stderr)
        return 2
    except TrainingError as err:  # e.g. a NaN loss; the last good checkpoint is kept
        print(f"snnbench {args.command}: stopped: {one_line(err)}", file=sys.stderr)
        return 3
    except Exception as err:  # noqa: BLE001 - nothing reaches the user as a traceback
        log = crash_log(args.command)
        if isinstance(err, OSError):  # disk full, permissions, a file vanished: the system's words and the file
            where = f" ({err.filename})" if err.filename else ""
            print(f"snnbench {args.command}: error: {err.strerror or type(err).__name__}{where}; traceback in {log}", file=sys.stderr)
            return 2
        print(f"snnbench {args.command}: internal error: {type(err).__name__}: {one_line(err)}; traceback in {log} "
              "(please report it with that file)", file=sys.stderr)
        return 1


def one_line(err: BaseException) -> str:
    """An exception's message on one line (some libraries' messages span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def crash_log(command: str) -> Path:
    """Write the current exception's traceback to a log file and return its path.

    The folder is ``$SNNBENCH_LOG_DIR``, else ``<data folder>/logs``, else the system's temporary folder.
    """
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
