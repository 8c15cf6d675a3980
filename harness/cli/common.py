"""What several commands' flags share: one spelling per concept across the command line.

- ``--out``: the folder a command writes (every command that writes; ``--results`` and ``verify``'s
  file are old spellings kept as hidden aliases);
- ``--device``: where a model runs (checked by ``harness.devices.check_device`` before any work);
- ``--energy-presets``: comma-separated names of the arithmetic energy presets, ``--energy-presets-file``
  a TOML file of your own (``--memory-presets`` / ``--memory-presets-file`` the same for memory presets);
- ``--data-dir``, ``--seed``; list-valued flags are comma-separated (``--keep-float linear,silu``).
"""

from __future__ import annotations

import argparse
from functools import partial

DATA_DIR_HELP = "data folder (default: $SNNBENCH_DATA or ~/.cache/snnbench)"
DEVICE_HELP = "cpu, cuda or cuda:<index> (default: cuda when available, else cpu)"  # harness.devices.DEVICE_HELP (no torch here)
CODINGS = ("rate", "bitwise", "multilevel")  # the spike codings, models.spiking.checks.CODINGS (not imported: --help stays free of torch)
say = partial(print, flush=True)  # progress lines, shown as they happen


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_out(p: argparse.ArgumentParser, default: str | None, what: str, old: str | None = None) -> None:
    """``--out``: the folder the command writes ``what`` to; ``old``: a former spelling, still accepted, not shown."""
    p.add_argument("--out", default=default, help=f"output folder: {what}")
    if old:
        p.add_argument(old, dest="out", help=argparse.SUPPRESS)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help=DEVICE_HELP)


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)


def add_energy_presets(p: argparse.ArgumentParser, default: str, one: bool = False) -> None:
    """``--energy-presets NAMES`` (and ``--energy-presets-file``); ``one``: the command prices under a single preset."""
    what = "the energy preset that prices the counted operations (one name)" if one else "energy presets that price the counted operations, comma-separated"
    p.add_argument("--energy-presets", default=default, help=f"{what}; see harness/energy/presets.toml")
    p.add_argument("--energy-preset", dest="energy_presets", help=argparse.SUPPRESS)  # the former spelling
    p.add_argument("--energy-presets-file", default=None, help="a TOML file of your own [[preset]] tables, same form as harness/energy/presets.toml")


def add_conversion_flags(p: argparse.ArgumentParser, what: str) -> None:
    """The calibrated conversion of a pretrained model's commands (frontier, energy): its text, tokens and scales, then --device."""
    p.add_argument("--calibration-data", default="webtext", help=f"training text for {what}")
    p.add_argument("--calibration-tokens", type=int, default=1024, help="tokens of calibration text")
    add_device(p)
    p.add_argument("--granularity", default="smoothed", choices=["token", "smoothed", "channel", "tensor"], help="activation scales of the conversion")


def comma_list(value: str | list[str] | None) -> list[str]:
    """``"a,b"`` (or a list of such strings) -> ["a", "b"]; empty parts dropped, None -> []."""
    texts = [value] if isinstance(value, str) else list(value or [])
    return [part.strip() for text in texts for part in text.split(",") if part.strip()]


class CommaSeparated(argparse.Action):
    """A list-valued flag: comma-separated (``--tasks a,b``); the space-separated form (``--tasks a b``) still works."""

    def __init__(self, option_strings, dest, nargs="+", **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, comma_list(values))


def add_training_run_flags(p: argparse.ArgumentParser, out: str | None, fresh: str, *switches: tuple[str, str]) -> None:
    """The closing flags of the commands that train: --out, --fresh, their own on/off ``switches`` ((flag, help) each),
    --device and --data-dir."""
    add_out(p, out, "checkpoints, logs and the summary (default: results/<...> named after the run)" if out is None else "checkpoints, logs and the summary")
    p.add_argument("--fresh", action="store_true", help=fresh)
    for flag, text in switches:
        p.add_argument(flag, action="store_true", help=text)
    add_device(p)
    add_data_dir(p)
