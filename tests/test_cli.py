"""The command line: verify runs, reports the SiLU error, writes its JSON atomically; bad flags fail cleanly."""

import json

import pytest

from harness.cli import main


def test_verify_passes_and_writes_its_figures(tmp_path, capsys):
    out = tmp_path / "verify.json"
    assert main(["verify", "--time-steps", "15", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "SNNSiLU (two fitted neurons) vs SiLU on [-8, 8]" in printed
    assert "T=127  max |error| = 0.0316" in printed
    report = json.loads(out.read_text())
    assert all(check["passed"] for check in report["checks"])
    assert {row["time_steps"] for row in report["silu_error"]} == {15, 31, 63, 127}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("flag", ["0", "-3", "abc"])
def test_bad_time_steps_is_a_usage_error(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", "--time-steps", flag])
    assert exit_info.value.code == 2
    assert "--time-steps" in capsys.readouterr().err


def test_time_steps_beyond_8_bits_is_a_one_line_error(capsys):
    assert main(["verify", "--time-steps", "200"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1..127" in err


def test_demo_plan_runs_every_stage_and_screenshots_only_with_a_browser(tmp_path, capsys, monkeypatch):
    """The demo's steps in order; the report step asks for a screenshot only when a Chromium is installed."""
    from harness.experiments.demo import steps
    from harness.report import browser

    plan = steps(tmp_path, 300, 2, 32)
    assert [argv[0] for _, argv in plan] == ["verify", "data", "train", "stdp", "convert", "eval", "report"]
    assert "--screenshot" not in plan[-1][1] and "--screenshot" in steps(tmp_path, 300, 2, 32, screenshot=True)[-1][1]
    monkeypatch.setattr(browser, "find_browser", lambda: None)
    assert main(["demo", "--dry-run", "--results", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "snnbench train --arch llama --mode qat" in printed and "--screenshot" not in printed
    monkeypatch.setattr(browser, "find_browser", lambda: "/usr/bin/chromium")
    assert main(["demo", "--dry-run", "--results", str(tmp_path)]) == 0
    assert "--screenshot" in capsys.readouterr().out


@pytest.mark.parametrize("command,module,function", [
    (["train", "--arch", "llama"], "harness.cli.train", "run"),
    (["braingpt-ablate"], "harness.cli.braingpt_ablate", "run"),
])
def test_a_training_stop_is_exit_3_with_its_reason(command, module, function, monkeypatch, capsys):
    """TrainingError (e.g. a NaN loss) from any command: one line naming the command, exit code 3."""
    import importlib

    from models.train.trainer import TrainingError

    def stop(args):
        raise TrainingError("the loss became nan at step 5; stopped")

    monkeypatch.setattr(importlib.import_module(module), function, stop)
    assert main(command) == 3
    assert capsys.readouterr().err.strip() == f"snnbench {command[0]}: stopped: the loss became nan at step 5; stopped"
