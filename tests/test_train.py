"""Stage-1 training: schedule, exact resume after a kill, DDP equals one process, NaN stop, bad configs,
QAT -> SNN losslessness, and `snnbench train` end to end on a tiny fake Penn Treebank."""

import json
import math
import os
import shutil
import socket

import pytest
import torch
import torch.multiprocessing as mp

from harness.cli import main
from models.train.config import TrainConfig, load_config
from models.train.trainer import Trainer, TrainingError, learning_rate
from tasks.files import FolderLock, LockedError
from tests.micro import fake_ptb, run_killed_at, toml_table, train_table

TOML = (
    train_table(seq_len=8, max_steps=6, warmup_steps=2, eval_interval=3, eval_tokens=64, eval_stride=4, checkpoint_interval=3, seed=7)
    + toml_table("model.llama", hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    return fake_ptb(tmp_path, monkeypatch, TOML)


def _trainer(config_path, out, mode="ann", **overrides):
    config, fields = load_config(str(config_path), "llama", overrides)
    return Trainer("llama", mode, config, fields, out, device="cpu")


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_learning_rate_schedule_by_hand():
    c = TrainConfig(lr=1.0, min_lr=0.0, warmup_steps=2, max_steps=10, restart_period=4, restart_mult=2)
    assert learning_rate(c, 0) == pytest.approx(0.5) and learning_rate(c, 1) == pytest.approx(1.0)
    assert learning_rate(c, 2) == pytest.approx(1.0)  # start of the first cosine cycle
    assert learning_rate(c, 4) == pytest.approx(0.5)  # half way through 4 steps
    assert learning_rate(c, 6) == pytest.approx(1.0)  # warm restart; the next cycle is 8 steps long
    assert learning_rate(c, 10) == pytest.approx(0.5)


def test_a_killed_run_resumes_exactly(corpus, tmp_path):
    straight = _trainer(corpus, tmp_path / "straight")
    straight.run(progress=False)
    run_killed_at(_trainer(corpus, tmp_path / "killed"), 5)
    assert json.loads((tmp_path / "killed" / "checkpoint" / "trainer.json").read_text())["step"] == 3
    resumed = _trainer(corpus, tmp_path / "killed")
    result = resumed.run(progress=False)
    assert result.steps == 6
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "killed")


def _checkpoints_at_3_and_6(corpus, tmp_path):
    """A run folder whose checkpoint is at step 6, and a copy of the step-3 checkpoint it replaced (written earlier)."""
    out = tmp_path / "run"
    _trainer(corpus, out, max_steps=3).run(progress=False)
    step3 = tmp_path / "step3"
    shutil.copytree(out / "checkpoint", step3)  # keeps the files' times: this one stays the older
    _trainer(corpus, out).run(progress=False)
    return out, step3


def _between_the_renames(out, step3):
    """Killed after checkpoint -> .checkpoint-old-<pid>, before the new .checkpoint-XXXX -> checkpoint."""
    os.replace(out / "checkpoint", out / ".checkpoint-k1ll3d")
    shutil.copytree(step3, out / ".checkpoint-old-4242")


def _before_the_old_one_was_deleted(out, step3):
    shutil.copytree(step3, out / ".checkpoint-old-4242")


def _while_writing_the_new_one(out, step3):
    """Killed while .checkpoint-XXXX was written: one empty, one without trainer.json; the old checkpoint in place."""
    shutil.copytree(out / "checkpoint", out / ".checkpoint-partial")
    (out / ".checkpoint-partial" / "trainer.json").unlink()
    (out / ".checkpoint-empty").mkdir()
    shutil.rmtree(out / "checkpoint")
    shutil.copytree(step3, out / "checkpoint")


def _while_writing_trainer_json(out, step3):
    """The new checkpoint's trainer.json cut short, left between the renames: the old one is the newest complete."""
    os.replace(out / "checkpoint", out / ".checkpoint-k1ll3d")
    text = (out / ".checkpoint-k1ll3d" / "trainer.json").read_text()
    (out / ".checkpoint-k1ll3d" / "trainer.json").write_text(text[: len(text) // 2])
    shutil.copytree(step3, out / ".checkpoint-old-4242")


@pytest.mark.parametrize("kill, resumed_at", [
    (_between_the_renames, 6),
    (_before_the_old_one_was_deleted, 6),
    (_while_writing_the_new_one, 3),
    (_while_writing_trainer_json, 3),
])
def test_a_run_killed_while_checkpointing_resumes_from_the_newest_complete_checkpoint(corpus, tmp_path, kill, resumed_at):
    out, step3 = _checkpoints_at_3_and_6(corpus, tmp_path)
    kill(out, step3)
    for folder in (out, out / "checkpoint"):
        if folder.is_dir():
            (folder / ".config.json.k1ll3d.tmp").write_text("{")  # a killed atomic write
    with open(out / "log.jsonl", "a") as log:
        log.write('{"step": 7, "lo')  # a log line cut short
    resumed = _trainer(corpus, out, max_steps=9)
    started = []
    original = resumed.train_step

    def recording_step():
        started.append(resumed.step)
        return original()

    resumed.train_step = recording_step
    assert resumed.run(progress=False).steps == 9
    assert started[0] == resumed_at
    assert json.loads((out / "checkpoint" / "trainer.json").read_text())["step"] == 9
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == list(range(1, 10))
    assert not list(out.glob(".checkpoint-*")) and not list(out.rglob("*.tmp"))


def test_a_second_training_into_the_same_folder_is_refused(corpus, tmp_path, capsys):
    """A live run's lock refuses a second one (one line, nothing touched); the lock goes when a run ends."""
    out = tmp_path / "run"
    (out / ".checkpoint-old-4242").mkdir(parents=True)
    with FolderLock(out, "someone else's run"):
        with pytest.raises(LockedError, match=rf"training run {out} is in use by process {os.getpid()} .*; wait for it or use another --out"):
            _trainer(corpus, out)
        assert main(["train", "--arch", "llama", "--config", str(corpus), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "wait for it or use another --out" in err
        assert (out / ".checkpoint-old-4242").is_dir() and not (out / "tokenizer.json").exists()  # no clean-up, no work
    _trainer(corpus, out).run(progress=False)
    assert not (out / ".checkpoint-old-4242").exists()
    FolderLock(out, "the finished run").acquire().release()  # run() released it


def test_warmup_steps_flag_allows_a_shorter_run(corpus, tmp_path, capsys):
    """--max-steps 2 is refused with the config's warm-up of 2, naming --warmup-steps; with it the run trains."""
    args = ["train", "--arch", "llama", "--mode", "ann", "--config", str(corpus), "--max-steps", "2"]
    assert main([*args, "--out", str(tmp_path / "short")]) == 2
    assert "--warmup-steps" in capsys.readouterr().err and not (tmp_path / "short").exists()
    assert main([*args, "--warmup-steps", "1", "--out", str(tmp_path / "short")]) == 0
    summary = json.loads((tmp_path / "short" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["config"]["warmup_steps"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, config_path, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    import torch.distributed as dist

    torch.set_num_threads(1)
    trainer = _trainer(config_path, out)
    trainer.run(progress=False)
    dist.destroy_process_group()


def test_two_processes_give_the_loss_curve_of_one(corpus, tmp_path):
    one = _trainer(corpus, tmp_path / "one")
    one.run(progress=False)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(corpus), tmp_path / "two"), nprocs=2, join=True)
    for a, b in zip(_losses(tmp_path / "one"), _losses(tmp_path / "two")):
        assert a == pytest.approx(b, rel=1e-5)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    trainer = _trainer(corpus, tmp_path / "nan")
    original = trainer.train_step

    def poisoned():
        loss = original()
        return float("nan") if trainer.step == 5 else loss

    trainer.train_step = poisoned
    with pytest.raises(TrainingError, match=r"loss became nan at step 5.*last good checkpoint \(step 3\)"):
        trainer.run(progress=False)
    assert json.loads((tmp_path / "nan" / "checkpoint" / "trainer.json").read_text())["step"] == 3


@pytest.mark.parametrize(
    "overrides, match",
    [({"lr": -1.0}, "lr must be a number >= 0"), ({"batch_size": 0}, "batch_size must be a positive integer"), ({"warmup_steps": 99}, "warmup_steps")],
)
def test_bad_configs_name_the_file_and_key(corpus, overrides, match):
    with pytest.raises(ValueError, match=match) as err:
        load_config(str(corpus), "llama", overrides)
    assert "micro.toml" in str(err.value)


def test_unknown_config_architecture_and_keys(corpus, tmp_path):
    with pytest.raises(ValueError, match=r"no \[model.mamba2\] table"):
        load_config(str(corpus), "mamba2")
    with pytest.raises(ValueError, match="no training config 'huge'"):
        load_config("huge", "llama")
    bad = tmp_path / "bad.toml"
    bad.write_text(TOML.replace("seed = 7", "seed = 7\nmomentum = 0.9"))
    with pytest.raises(ValueError, match=r"unknown keys \['momentum'\]"):
        load_config(str(bad), "llama")


def test_a_checkpoint_of_another_architecture_is_refused(corpus, tmp_path):
    _trainer(corpus, tmp_path / "run").run(progress=False)
    with pytest.raises(ValueError, match="checkpoint is a llama model in mode ann, this run trains llama in mode qat"):
        _trainer(corpus, tmp_path / "run", mode="qat").run(progress=False)


def test_train_cli_qat_converts_losslessly(corpus, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "--arch", "llama", "--mode", "qat", "--config", str(corpus), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["snn_equals_qat"] is True
    assert summary["snn_fused_test_perplexity"] == summary["test_perplexity"]
    assert summary["tokens_per_second"] > 0 and summary["steps"] == 6
    printed = capsys.readouterr().out
    assert "converted to SNN (snn-fused)" in printed and "equal to the QAT model" in printed
    assert main(["train", "--arch", "llama", "--config", str(corpus), "--out", str(tmp_path / "x"), "--batch-size", "0"]) == 2


def test_stdp_lowers_time_steps_and_keeps_the_model(corpus, tmp_path, capsys):
    """Stage 3 on a tiny QAT model: per-layer windows shrink, weights absorb alpha, outputs stay close."""
    from models.convert import swap_mode
    from models.spiking import Synapsis
    from models.train.stdp import STDPConfig, optimize_time_steps, stdp_delta

    out = tmp_path / "qat"
    assert main(["train", "--arch", "llama", "--mode", "qat", "--config", str(corpus), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["stdp", "--checkpoint", str(out / "checkpoint"), "--steps", "40", "--target-fraction", "0.3", "--eval-tokens", "256"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "stdp" / "stdp.json").read_text())
    assert summary["mean_T"]["after"] < summary["mean_T"]["before"] == 127
    assert abs(summary["perplexity"]["change"]) < 0.05
    assert summary["estimated_energy"]["after"]["spikes_per_token"] < summary["estimated_energy"]["before"]["spikes_per_token"]
    qat, snn = summary["estimated_energy"]["qat_ann"], summary["estimated_energy"]["before"]
    assert qat["spikes_per_token"] == 0 < snn["spikes_per_token"] and qat["joules_per_token"] > 0  # the QAT ANN runs MACs, no spikes
    assert "perplexity" in printed and "T before" in printed
    from models.load import load_checkpoint

    stage3 = load_checkpoint(out / "stdp" / "model").model
    windows = [int(m.window) for m in stage3.modules() if isinstance(m, Synapsis)]
    assert min(windows) < 127  # the shortened windows are saved with the model
    # eq. 15 by hand: post fires 2 steps after pre -> potentiation A+ exp(-2/tau+)
    config = STDPConfig()
    delta = stdp_delta(torch.tensor([5.0]), torch.tensor([3.0, 7.0]), config)
    assert delta[0, 0] == pytest.approx(config.a_plus * math.exp(-2 / config.tau_plus))
    assert delta[0, 1] == pytest.approx(-config.a_minus * math.exp(-2 / config.tau_minus))
    with pytest.raises(ValueError, match="converted SNN"):
        optimize_time_steps(swap_mode(stage3, stage3.spiking.with_mode("qat")), [])
