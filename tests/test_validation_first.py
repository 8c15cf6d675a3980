"""Every command checks its flags, its input folder and --out before any work: exit code 2, one line
on stderr naming the flag, nothing written. Any expensive step called here fails the test."""

import json

import pytest

from harness.cli import main


def _forbidden(*args, **kwargs):
    raise AssertionError("work started before the arguments were checked")


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working folder (default outputs land in ./results), with every expensive step forbidden;
    ``cwd / "file"`` is a regular file, so ``file/out`` cannot be created, even by root."""
    import harness.stages.conversion
    import harness.stages.stdp
    import harness.stages.training
    import harness.verify
    import models.load
    import models.train.data
    import models.train.trainer
    import models.train.stdp

    for module, name in (
        (harness.stages.conversion, "load_model"),
        (harness.stages.stdp, "load_checkpoint"),
        (harness.stages.stdp, "token_stream"),
        (harness.stages.stdp, "optimize_time_steps"),
        (harness.stages.training, "Trainer"),
        (harness.verify, "_neuron_checks"),
        (models.load, "load_checkpoint"),
        (models.train.data, "token_stream"),
        (models.train.data, "corpus_tokenizer"),
        (models.train.trainer, "Trainer"),
        (models.train.stdp, "optimize_time_steps"),
    ):
        monkeypatch.setattr(module, name, _forbidden)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder\n")
    return tmp_path


def _refused(argv: list[str], capsys, *needles: str) -> str:
    """Run ``snnbench argv``: exit code 2 and one stderr line holding every needle; returns the line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"snnbench {argv[0]}: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def _nothing_written(cwd, *kept: str) -> None:
    assert sorted(p.name for p in cwd.iterdir()) == sorted(["file", *kept])


# train: checked before the corpus and tokenizer are built
TRAIN = ["train", "--arch", "llama", "--config", "tiny"]
TRAIN_CASES = [
    (["--arch", "gru"], ["--arch 'gru' is unknown", "known architectures: llama, mamba2, ttt"]),
    (["--bits", "1"], ["--bits must be an integer in 2..16, got 1"]),
    (["--bits", "17"], ["--bits must be an integer in 2..16, got 17"]),
    (["--batch-size", "0"], ["--batch-size must be >= 1, got 0"]),
    (["--max-steps", "0"], ["--max-steps must be >= 1, got 0"]),
    (["--warmup-steps", "-1"], ["--warmup-steps must be >= 0, got -1"]),
    (["--max-steps", "60"], ["--max-steps 60", "60 warm-up steps", "--warmup-steps"]),  # tiny.toml warms up for 60 steps
    (["--keep-float", "banana"], ["keep_float has unknown operator kinds ['banana']"]),
    (["--out", "file/out"], ["--out file/out: cannot write there"]),
]

# convert: checked before the model is loaded
CONVERT = ["convert", "--model", "smollm2-135m"]
CONVERT_CASES = [
    (["--bits", "1"], ["--bits must be an integer in 2..16, got 1"]),
    (["--time-steps", "0"], ["--time-steps must be an integer >= 1, got 0"]),
    (["--bits", "4", "--time-steps", "8"], ["--time-steps=8 exceeds the 7 levels"]),
    (["--window", "1"], ["--window must be >= 2, got 1"]),
    (["--calibration-tokens", "100"], ["--calibration-tokens 100 is less than one --window of 256 tokens"]),
    (["--eval-tokens", "10", "--window", "16"], ["--eval-tokens 10 is less than one --window of 16 tokens"]),
    (["--audit-windows", "0"], ["--audit-windows must be >= 1, got 0"]),
    (["--kind-bits", "multiply=1"], ["--kind-bits multiply must be an integer in 2..16, got 1"]),
    (["--kind-bits", "banana=8"], ["--kind-bits 'banana=8': unknown operator kind 'banana'", "known: linear"]),
    (["--kind-bits", "multiply"], ["--kind-bits expects KIND=BITS"]),
    (["--out", "file/out"], ["--out file/out: cannot write there"]),
]

# verify: checked before any check runs
VERIFY = ["verify"]
VERIFY_CASES = [
    (["--time-steps", "200"], ["--time-steps must be in 1..127", "got 200"]),
    (["--out", "file/out"], ["--out file/out: cannot write there"]),
    (["--out", "results/verify.json"], ["--out results/verify.json: --out is the folder verify.json goes to; give --out results"]),
]


@pytest.mark.parametrize("argv, flags, needles", [(TRAIN, *c) for c in TRAIN_CASES] + [(CONVERT, *c) for c in CONVERT_CASES] + [(VERIFY, *c) for c in VERIFY_CASES])
def test_commands_check_flags_before_any_work(cwd, capsys, argv, flags, needles):
    _refused([*argv, *flags], capsys, *needles)
    _nothing_written(cwd)


def _checkpoint(folder, mode: str = "qat", config: str | None = None):
    """A checkpoint folder as far as stdp's checks read it: config.json (training corpus and seq_len 8) and a tokenizer file."""
    folder.mkdir(parents=True)
    saved = {"model": {"architecture": "llama"}, "spiking": {"mode": mode}, "training": {"config": {"data": "ptb", "seq_len": 8}}}
    (folder / "config.json").write_text(config if config is not None else json.dumps(saved))
    (folder / "tokenizer.json").write_text("{}")
    return folder


@pytest.mark.parametrize("flags, needles", [
    (["--steps", "0"], ["--steps must be >= 1, got 0"]),
    (["--target-fraction", "0"], ["--target-fraction must be in (0, 1]", "got 0.0"]),
    (["--target-fraction", "1.5"], ["--target-fraction must be in (0, 1]", "got 1.5"]),
    (["--target-fraction", "nan"], ["--target-fraction must be in (0, 1]"]),
    (["--lambda-t", "-1"], ["--lambda-t must be a finite number > 0, got -1.0"]),
    (["--lambda-c", "inf"], ["--lambda-c must be a finite number > 0, got inf"]),
    (["--lambda-c", "nan"], ["--lambda-c must be a finite number > 0, got nan"]),
    (["--batches", "0"], ["--batches must be >= 1, got 0"]),
    (["--window", "1"], ["--window must be >= 2, got 1"]),
    (["--eval-tokens", "4"], ["--eval-tokens 4 is less than one window of 8 tokens"]),  # the checkpoint's seq_len
    (["--eval-tokens", "100", "--window", "200"], ["--eval-tokens 100 is less than one window of 200 tokens"]),
    (["--energy-presets", "7nm"], ["--energy-presets '7nm': unknown energy preset '7nm'; known: "]),
    (["--energy-presets", "45nm-fp32,45nm-int8"], ["this command prices under one preset"]),
    (["--device", "cuda:7"], ["--device cuda:7: "]),
    (["--out", "file/out"], ["--out file/out: cannot write there"]),
])
def test_stdp_checks_flags_before_loading(cwd, capsys, flags, needles):
    from harness.energy import load_presets

    _checkpoint(cwd / "run" / "checkpoint")
    err = _refused(["stdp", "--checkpoint", "run/checkpoint", *flags], capsys, *needles)
    if "--energy-presets" in flags and "7nm" in flags:
        assert all(name in err for name in load_presets())
    _nothing_written(cwd, "run")
    assert not (cwd / "run" / "stdp").exists()


@pytest.mark.parametrize("make, needles", [
    (lambda folder: None, ["--checkpoint run/checkpoint: no such folder"]),
    (lambda folder: _checkpoint(folder, config='{"model": {'), ["config.json: not valid JSON"]),
    (lambda folder: _checkpoint(folder, config="[]"), ["config.json: has no 'model' section"]),
    (lambda folder: _checkpoint(folder, mode="ann"), ["an ANN checkpoint", "snnbench convert"]),
])
def test_stdp_checks_the_checkpoint_before_loading_it(cwd, capsys, make, needles):
    make(cwd / "run" / "checkpoint")
    _refused(["stdp", "--checkpoint", "run/checkpoint"], capsys, *needles)
    assert not (cwd / "run" / "stdp").exists()
