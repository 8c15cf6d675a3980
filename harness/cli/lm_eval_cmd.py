"""``snnbench lm-eval ARGS...``: lm-eval's own command line, with snnbench's model and tasks.

ARGS go unchanged to lm-eval's CLI entry point (``lm_eval.__main__.cli_evaluate``, which reads
``sys.argv``), after importing the adapter (registering lm-eval model ``snnbench``) and with
snnbench's ``tasks/`` folder added as ``--include_path`` unless ARGS give one. The task data
is read from snnbench's data folder (``$SNNBENCH_DATA``, else ``~/.cache/snnbench``). The exit
status is lm-eval's; ``snnbench lm-eval --help`` is lm-eval's help. For example::

    snnbench lm-eval --model snnbench --model_args pretrained=smollm2-135m,mode=snn-fused \\
                     --tasks snnbench_arc_easy --limit 2 --output_path out --log_samples
    snnbench lm-eval ls tasks
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LM_EVAL_COMMANDS = ("run", "ls", "validate")  # lm-eval's subcommands; without one, lm-eval inserts "run"
HELP_FLAGS = ("-h", "--help")


def add_parser(commands) -> None:
    # No options of its own: "\0" as the only option prefix makes every argument, --help included, part of ARGS.
    p = commands.add_parser("lm-eval", add_help=False, prefix_chars="\0",
                            help="lm-eval's own command line with snnbench's model (--model snnbench) and tasks (snnbench_*)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="lm-eval's arguments (snnbench lm-eval --help lists them)")
    p.set_defaults(handler=run)


def tasks_folder() -> Path:
    """snnbench's lm-eval task configs (the folder ``snnbench eval`` gives lm-eval's TaskManager)."""
    from tasks import loader

    return Path(loader.__file__).parent


def with_tasks(args: list[str], folder: Path) -> list[str]:
    """``args`` with ``--include_path folder`` appended, unless they ask for help, give no work or give an include path."""
    if not args or any(a in HELP_FLAGS for a in args) or args in [[c] for c in LM_EVAL_COMMANDS]:
        return list(args)
    if any(a == "--include_path" or a.startswith("--include_path=") for a in args):
        return list(args)
    return [*args, "--include_path", str(folder)]


@contextmanager
def argv(args: list[str]) -> Iterator[None]:
    """``sys.argv`` as lm-eval's CLI reads it (``lm-eval ARGS``), restored afterwards (lm-eval inserts "run" into it)."""
    saved = sys.argv
    sys.argv = ["lm-eval", *args]
    try:
        yield
    finally:
        sys.argv = saved


def exit_status(code: object) -> int:
    """A ``SystemExit`` code as an exit status (None: 0; a message: printed, 1), as the interpreter would."""
    if code is None or isinstance(code, int):
        return int(code or 0)
    print(code, file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from lm_eval.__main__ import cli_evaluate

    import harness.evaluation.adapter  # noqa: F401  (registers lm-eval model "snnbench")
    from tasks.fetch import use_data_dir

    use_data_dir()  # the task YAMLs' loader reads $SNNBENCH_DATA: resolved (and exported) as every snnbench command does
    if any(a in HELP_FLAGS for a in args.args):  # lm-eval's help follows; say what snnbench adds to it
        print("snnbench lm-eval: lm-eval's command line with model 'snnbench' (--model snnbench --model_args pretrained=...,mode=...) "
              f"and snnbench's tasks (snnbench_*, --include_path {tasks_folder()}) registered; lm-eval's help follows.\n", flush=True)
    with argv(with_tasks(args.args, tasks_folder())):
        try:
            cli_evaluate()
        except SystemExit as done:  # argparse's errors and --help; lm-eval itself returns normally
            return exit_status(done.code)
    return 0
