"""One CLI vocabulary: one flag per concept, spelled the same in every command, defaults shown in help, --version,
--device wherever a model runs, and one-line errors (no traceback) for a user's mistake."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from harness.cli import DefaultsShown, build_parser, main
from models.arch.registry import ARCHITECTURES

# commands that run a model, and the one that does not take --device (benchmarks time this machine's CPU)
RUN_A_MODEL = ("convert", "eval", "train", "stdp", "frontier", "energy", "ablate", "neurtransformer", "braingpt-ablate", "reproduce", "demo")


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS and "-h" not in a.option_strings]


def test_every_flag_says_what_it_does_and_its_default():
    for name, parser in commands().items():
        for action in visible(parser):
            assert action.help, f"snnbench {name} {action.option_strings[0]} has no help"
            shown = DefaultsShown("x")._get_help_string(action) % {"default": action.default}
            if action.default is not None and action.default is not False and not action.required:
                assert "default" in shown, f"snnbench {name} {action.option_strings[0]} does not show its default"


def test_one_spelling_per_concept():
    for name, parser in commands().items():
        flags = {s for a in visible(parser) for s in a.option_strings}
        assert not flags & {"--results", "--energy-preset"}, f"snnbench {name} shows an old spelling"
        if name in ("eval", "frontier", "stdp", "ablate"):  # neurtransformer takes one built-in preset name
            assert {"--energy-presets", "--energy-presets-file"} <= flags, name
        if name in RUN_A_MODEL:
            assert "--device" in flags, f"snnbench {name} runs a model but has no --device"
    outs = [name for name, parser in commands().items() if any("--out" in a.option_strings for a in visible(parser))]
    assert set(outs) >= {"verify", "convert", "eval", "train", "stdp", "frontier", "energy", "report", "ablate", "reproduce", "bench", "demo", "compare"}
    for name in outs:  # every --out is a folder
        out = next(a for a in visible(commands()[name]) if "--out" in a.option_strings)
        assert "file" not in out.help.split(":")[0], f"snnbench {name} --out: {out.help}"


def test_train_lists_every_architecture():
    arch = next(a for a in visible(commands()["train"]) if "--arch" in a.option_strings)
    assert all(name in arch.help for name in ARCHITECTURES)


def test_list_flags_take_commas_and_the_old_spaces():
    parser = build_parser()
    assert parser.parse_args(["train", "--arch", "llama", "--keep-float", "softmax,silu"]).keep_float == ["softmax", "silu"]
    assert parser.parse_args(["train", "--arch", "llama", "--keep-float", "softmax", "silu"]).keep_float == ["softmax", "silu"]
    assert parser.parse_args(["eval", "--model", "m", "--tasks", "a:0,b"]).tasks == ["a:0", "b"]


def test_old_spellings_still_work_hidden():
    parser = build_parser()
    assert parser.parse_args(["eval", "--model", "m", "--results", "r"]).out == "r"
    assert parser.parse_args(["eval", "--model", "m", "--energy-preset", "45nm-int8"]).energy_presets == "45nm-int8"
    assert parser.parse_args(["demo", "--results", "d"]).out == "d"


def test_version():
    result = subprocess.run([sys.executable, "-m", "harness.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("snnbench ")


@pytest.mark.parametrize("argv", [
    ["convert", "--model", "smollm2-135m", "--device", "cuda"],
    ["stdp", "--checkpoint", ".", "--device", "cuda:0"],
    ["energy", "--model", "smollm2-135m", "--device", "tpu"],
    ["ablate", "--ann", ".", "--device", "cuda"],
])
def test_a_device_this_machine_lacks_is_one_line_before_any_work(argv, capsys, tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    if torch.cuda.is_available() and "tpu" not in argv:
        pytest.skip("this machine has CUDA")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.json"))


def test_an_energy_presets_file_given_as_names_says_which_flag():
    from harness.energy.synops import select_presets

    with pytest.raises(ValueError, match="give your presets file with --energy-presets-file mine.toml"):
        select_presets("mine.toml")
    with pytest.raises(ValueError, match="this command prices under one preset"):
        select_presets("45nm-fp32,45nm-int8", one=True)
