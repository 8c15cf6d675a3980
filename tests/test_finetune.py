"""Stage 1 on a pretrained model: quantization-aware fine-tuning with distillation (``snnbench train --init``).

A tiny Llama trained here as a float model is the "pretrained" one; fine-tuning it at 3 bits must lower its
KL to the float teacher, convert to the SNN bit for bit with its learned clips and smoothing factors, and
resume after a kill on the same loss curve."""

import json

import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.evaluation.identity import model_identity
from harness.finetuned import best_finetuned, finetuned_runs
from models.arch.spiking_config import SpikingConfig
from models.convert import swap_mode
from models.load import load_checkpoint
from models.spiking.quant import Quantizer, QuantSpec, learned_quantizer_parameters
from models.train.config import load_config
from models.train.finetune import FineTuner, distillation_loss
from models.train.trainer import Trainer
from tests.micro import fake_ptb, run_killed_at, toml_table, train_table

MODEL = toml_table("model.llama", hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                   max_position_embeddings=32)
PRETRAIN = train_table(seq_len=8, max_steps=60, warmup_steps=2, eval_interval=60, eval_tokens=64, eval_stride=8, checkpoint_interval=60, seed=3) + MODEL
FINETUNE = train_table(
    seq_len=8, max_steps=8, warmup_steps=1, lr=0.001, min_lr=0.0001, eval_interval=4, eval_tokens=256, eval_stride=8, checkpoint_interval=4,
    test_tokens=128, distill=0.9, learn_quantizers=True, quantizer_lr=0.001, calibration_tokens=64, seed=5, weight_decay=0.0,
)
SPIKING = SpikingConfig(bits=3, linear_granularity="smoothed", norm_granularity="smoothed")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A float tiny Llama trained 60 steps on the fake Penn Treebank (the fake registry's data folder stays set)."""
    root = tmp_path_factory.mktemp("pretrained")
    mp = pytest.MonkeyPatch()
    config_path = fake_ptb(root, mp, PRETRAIN)
    (root / "finetune.toml").write_text(FINETUNE)
    config, fields = load_config(str(config_path), "llama")
    Trainer("llama", "ann", config, fields, root / "ann", device="cpu").run(progress=False)
    yield root
    mp.undo()


def _tuner(pretrained, out, spiking=SPIKING, **overrides) -> FineTuner:
    config, _ = load_config(str(pretrained / "finetune.toml"), None, overrides)
    init = load_checkpoint(pretrained / "ann" / "checkpoint")
    return FineTuner(init, model_identity(init.source, init.name), config, out, spiking, device="cpu")


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_distillation_loss_by_hand():
    student = torch.tensor([[2.0, 0.0, -1.0]])
    teacher = torch.tensor([[0.0, 1.0, 0.5]])
    p = teacher.softmax(-1)
    kl = float((p * (p.log() - student.log_softmax(-1))).sum())
    ce = float(-student.log_softmax(-1)[0, 1])
    loss, parts = distillation_loss(student, teacher, torch.tensor([1]), 0.75)
    assert parts["kl"] == pytest.approx(kl) and parts["token"] == pytest.approx(ce)
    assert float(loss) == pytest.approx(0.75 * kl + 0.25 * ce)


def test_fine_tuning_with_distillation_lowers_the_kl_to_the_float_teacher(pretrained, tmp_path):
    tuner = _tuner(pretrained, tmp_path / "ft")
    before = tuner.kl_to_teacher(tuner.valid_stream)
    assert before > 1e-3  # 3 bits: the QAT model starts away from its teacher
    tuner.run(progress=False)
    after = tuner.kl_to_teacher(tuner.valid_stream)
    assert after < 0.8 * before
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["valid_kl_to_teacher"] == pytest.approx(after)
    log = [json.loads(line) for line in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    assert all("kl_loss" in r and "token_loss" in r for r in log)


def test_a_fine_tuned_model_converts_to_the_snn_bit_for_bit(pretrained, tmp_path):
    tuner = _tuner(pretrained, tmp_path / "ft")
    tuner.run(progress=False)
    learned = learned_quantizer_parameters(tuner.model)
    assert learned, "fine-tuning has quantizer parameters to learn"
    moved = [p for p in learned if p.dim() == 0 and float(p.detach()) != 1.0]
    assert moved, "the clips moved away from their calibrated value"
    reloaded = load_checkpoint(tmp_path / "ft" / "checkpoint").model  # what was saved, clips and factors included
    ids = tuner.valid_stream[:24].view(3, 8)
    with torch.no_grad():
        qat = tuner.model.eval()(ids)[0]
        assert torch.equal(reloaded.eval()(ids)[0], qat)
        for mode in ("snn-fused", "snn"):
            assert torch.equal(swap_mode(reloaded, reloaded.spiking.with_mode(mode))(ids)[0], qat), mode


def test_a_killed_fine_tuning_resumes_on_the_same_loss_curve(pretrained, tmp_path):
    straight = _tuner(pretrained, tmp_path / "straight")
    straight.run(progress=False)
    run_killed_at(_tuner(pretrained, tmp_path / "killed"), 6)
    resumed = _tuner(pretrained, tmp_path / "killed")
    assert resumed.run(progress=False).steps == 8
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "killed")
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_resuming_with_other_bits_is_refused(pretrained, tmp_path):
    _tuner(pretrained, tmp_path / "ft", max_steps=4).run(progress=False)
    other = _tuner(pretrained, tmp_path / "ft", spiking=SpikingConfig(bits=6, linear_granularity="smoothed", norm_granularity="smoothed"))
    with pytest.raises(ValueError, match=r"other settings \(bits: 3 -> 6, time_steps: 3 -> 31\)"):
        other.run(progress=False)


def test_train_init_cli_fine_tunes_and_checks_the_conversion(pretrained, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--init", str(pretrained / "ann" / "checkpoint"), "--bits", "3", "--config", str(pretrained / "finetune.toml"),
                 "--max-steps", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "fine-tuning" in printed and "KL to the float model" in printed
    assert "(equal to the QAT model)" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["snn_equals_qat"] and summary["spiking"]["bits"] == 3 and summary["spiking"]["linear_granularity"] == "smoothed"


@pytest.mark.parametrize("argv, message", [
    (["--init", "x", "--arch", "llama"], "--arch and --init exclude each other"),
    (["--init", "x", "--mode", "ann"], "--init fine-tunes quantization-aware"),
    ([], "give --arch ARCH to train from scratch, or --init MODEL"),
    (["--init", "/nonexistent", "--data", "nosuch"], "unknown corpus 'nosuch'"),  # the corpus is checked before the model is read
])
def test_bad_fine_tuning_flags_are_one_line_errors(argv, message, capsys):
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_learned_clip_gets_a_gradient_and_codes_the_same_in_every_mode():
    q = Quantizer(QuantSpec(bits=4), num_features=8)
    q.clip.requires_grad_(True)
    x = torch.randn(5, 8)
    q(x).pow(2).sum().backward()
    assert q.clip.grad is not None and float(q.clip.grad) != 0
    with torch.no_grad():
        q.clip.fill_(0.6)
    n, s = q.counts(x)
    assert torch.equal(s, x.abs().amax(-1, keepdim=True) * torch.tensor(0.6) / 7)
    assert torch.equal(q(x).detach(), n * s)


# ---------------------------------------------------------------- the frontier over bit widths (snnbench frontier)


@pytest.fixture(scope="module")
def finetuned3(pretrained, tmp_path_factory):
    """A finished 3-bit fine-tuning of the pretrained model, in a results/train folder of its own."""
    root = tmp_path_factory.mktemp("trained")
    out = root / "results" / "train" / "tiny-qat-b3"
    _tuner(pretrained, out).run(progress=False)
    return out


def _frontier(pretrained, out, *extra):
    return main(["frontier", "--model", str(pretrained / "ann" / "checkpoint"), "--bits", "4,3", "--eval-data", "ptb", "--eval-tokens", "64",
                 "--window", "8", "--counted-windows", "2", "--calibration-data", "ptb", "--calibration-tokens", "64", "--stdp-steps", "2",
                 "--energy-presets", "45nm-fp32,45nm-int8", "--out", str(out), *extra])


def test_the_frontier_measures_each_bit_width_before_and_after_fine_tuning_and_stage_3(pretrained, finetuned3, tmp_path, capsys):
    out = tmp_path / "frontier"
    assert _frontier(pretrained, out, "--finetuned", str(finetuned3 / "checkpoint")) == 0, capsys.readouterr().err
    table = pd.read_csv(out / "frontier.csv")
    assert list(table["row"]) == ["ann", "b4-ptq", "b4-ptq-stdp", "b3-ptq", "b3-ptq-stdp", "b3-finetuned", "b3-finetuned-stdp"]
    assert (out / "frontier.png").stat().st_size > 10_000 and "b3-finetuned" in (out / "frontier.md").read_text()
    rows = table.set_index("row")
    # the fine-tuned row is the fine-tuned QAT model's perplexity exactly (the swap to spiking operators is lossless)
    qat = load_checkpoint(finetuned3 / "checkpoint")
    from models.perplexity import token_perplexity
    from tasks.corpus import text_ids
    expected = token_perplexity(qat.model.eval(), text_ids(qat.tokenizer, "ptb", "test", 64), context_window=8)["perplexity"]
    assert json.loads((out / "rows" / "b3-finetuned.json").read_text())["perplexity_ptb"] == expected
    assert rows.loc["ann", "spikes_per_token"] == 0 and rows.loc["b4-ptq", "spikes_per_token"] > 0
    assert rows.loc["b4-ptq-stdp", "mean_window"] <= rows.loc["b4-ptq", "mean_window"] == 7
    assert (table.filter(like="mj_per_token_") > 0).all().all()
    for preset in ("45nm-dram", "45nm-sram-events", "45nm-sram-steps"):  # memory-aware, a low-high range per row
        assert (table[f"mj_per_token_memory:{preset}_low"] <= table[f"mj_per_token_memory:{preset}_high"]).all()
    assert (table["mj_per_token_memory:45nm-dram_low"] > table["mj_per_token_45nm-int8"]).all()  # memory adds to arithmetic


def test_a_frontier_run_resumes_its_rows_and_refuses_other_settings(pretrained, tmp_path, capsys):
    out = tmp_path / "frontier"
    assert _frontier(pretrained, out, "--stdp-steps", "0", "--bits", "3") == 0
    first = pd.read_csv(out / "frontier.csv")
    (out / "rows" / "b3-ptq.json").unlink()
    (out / "frontier.csv").unlink()
    capsys.readouterr()
    assert _frontier(pretrained, out, "--stdp-steps", "0", "--bits", "3") == 0
    assert "ann                kept from the interrupted run" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "frontier.csv").drop(columns="seconds"), first.drop(columns="seconds"))
    assert _frontier(pretrained, out, "--stdp-steps", "0", "--bits", "4") == 2
    assert "holds a run with other settings (bits" in capsys.readouterr().err


def test_the_best_fine_tuned_run_of_the_same_model_is_found(pretrained, finetuned3):
    init = load_checkpoint(pretrained / "ann" / "checkpoint")
    identity = model_identity(init.source, init.name)
    runs = finetuned_runs(identity, finetuned3.parent)
    assert [r.bits for r in runs] == [3] and runs[0].checkpoint == finetuned3 / "checkpoint"
    assert best_finetuned(identity, 3, finetuned3.parent) == runs[0] and best_finetuned(identity, 4, finetuned3.parent) is None
    assert finetuned_runs({**identity, "sha256": "0" * 64}, finetuned3.parent) == []


@pytest.mark.parametrize("argv, message", [
    (["--bits", "8,1"], "--bits must be an integer in 2..16, got 1"),
    (["--energy-presets", "7nm"], "--energy-presets '7nm': unknown energy preset '7nm'"),
    (["--eval-tokens", "4"], "--eval-tokens must be >= 8, got 4"),
    (["--finetuned", "/nonexistent"], "--finetuned /nonexistent: no such folder"),
    (["--eval-data", "nosuch"], "unknown corpus 'nosuch'; known: ptb"),
    (["--calibration-data", "wikitext"], "corpus 'wikitext' is not built"),
])
def test_bad_frontier_flags_are_one_line_errors_before_any_work(pretrained, tmp_path, argv, message, capsys):
    assert _frontier(pretrained, tmp_path / "f", *argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "f" / "manifest.json").exists()


# ---------------------------------------------------------------- energy with memory, codings and break-even (snnbench energy)


def _energy(pretrained, out, *extra):
    return main(["energy", "--model", str(pretrained / "ann" / "checkpoint"), "--bits", "3", "--count-data", "ptb", "--window", "8",
                 "--counted-windows", "2", "--calibration-data", "ptb", "--calibration-tokens", "64", "--out", str(out), *extra])


def test_energy_prices_the_ann_baselines_and_each_coding_and_resumes(pretrained, finetuned3, tmp_path, capsys):
    out = tmp_path / "energy"
    assert _energy(pretrained, out, "--snn-from", str(finetuned3 / "checkpoint")) == 0, capsys.readouterr().err
    table = pd.read_csv(out / "energy-analysis.csv", keep_default_na=False, na_values=[""])
    assert len(table) == 2 * 3 * 6  # prefill and decode x 3 memory presets x (ANN fp32, fp16, int3; SNN rate, bitwise, multilevel)
    rows = table[(table["preset"] == "45nm-dram") & (table["phase"] == "prefill")].set_index("variant")
    decode = table[(table["preset"] == "45nm-dram") & (table["phase"] == "decode")].set_index("variant")
    assert (decode["tokens"] == 2).all() and (rows["tokens"] == 16).all()  # one generated token per window; 2 windows of 8
    assert (decode["cache_share_high"] > 0).all()  # a decoded token reads the keys and values of the 7 before it
    assert list(rows.index) == ["ANN fp32", "ANN fp16", "ANN int3", "SNN rate (int3)", "SNN bitwise (int3)", "SNN multilevel (int3)"]
    assert (rows.loc[["ANN fp32", "ANN fp16", "ANN int3"], "spikes_per_token"] == 0).all()
    spikes = rows.loc[["SNN rate (int3)", "SNN bitwise (int3)", "SNN multilevel (int3)"], "spikes_per_token"]
    assert spikes.iloc[0] >= spikes.iloc[1] >= spikes.iloc[2] > 0  # the same counts n: |n| >= popcount(|n|) >= [n != 0]
    assert list(rows["time_steps"].iloc[3:]) == [3, 2, 1]  # T = 3: rate 3 steps, bitwise ceil(log2 4) = 2, multilevel 1
    assert (table["memory_j_per_token_low"] <= table["memory_j_per_token_high"]).all()
    assert (table["memory_j_per_token_low"] > table["arithmetic_j_per_token"]).all()  # memory adds to the arithmetic
    assert rows.loc["ANN fp32", "arithmetic_j_per_token"] > rows.loc["ANN fp16", "arithmetic_j_per_token"] > rows.loc["ANN int3", "arithmetic_j_per_token"]
    assert set(table["verdict_vs_int3"].dropna()) <= {"wins", "loses", "depends"} and table["verdict_vs_int3"].notna().sum() == 18
    text = (out / "energy.md").read_text()
    assert "**45nm-sram-events**, decode" in text and "estimated" in text and (out / "breakeven.png").stat().st_size > 10_000
    # a killed run keeps its counts; other settings are refused
    (out / "counts" / "snn-bitwise.json").unlink()
    (out / "energy-analysis.csv").unlink()
    capsys.readouterr()
    assert _energy(pretrained, out, "--snn-from", str(finetuned3 / "checkpoint")) == 0
    said = capsys.readouterr().out
    assert "ann              counts kept from an earlier run of these settings" in said and "snn-bitwise" in said
    again = pd.read_csv(out / "energy-analysis.csv", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(again, table)
    assert _energy(pretrained, out, "--snn-from", "none") == 2
    assert "holds a run with other settings" in capsys.readouterr().err


def test_a_wrong_snn_from_is_refused_before_any_counting(pretrained, finetuned3, tmp_path, capsys):
    assert _energy(pretrained, tmp_path / "e", "--snn-from", str(pretrained / "ann" / "checkpoint")) == 2
    assert "a float model; give the checkpoint of a snnbench train --init run" in capsys.readouterr().err
    assert _energy(pretrained, tmp_path / "e", "--snn-from", str(finetuned3 / "checkpoint"), "--bits", "4") == 2
    assert "a 3-bit model, not 4 bits; pass --bits 3" in capsys.readouterr().err
    assert not (tmp_path / "e" / "manifest.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--bits", "1"], "--bits must be an integer in 2..16, got 1"),
    (["--codings", "rate,morse"], "--codings 'rate,morse': unknown morse; choose from rate, bitwise, multilevel"),
    (["--memory-presets", "7nm"], "--memory-presets '7nm': unknown 7nm"),
    (["--snn-from", "/nonexistent"], "--snn-from /nonexistent: no such checkpoint folder"),
    (["--count-data", "nosuch"], "unknown corpus 'nosuch'; known: ptb"),
    (["--window", "1"], "--window must be >= 2, got 1"),
])
def test_bad_energy_flags_are_one_line_errors_before_any_work(pretrained, tmp_path, argv, message, capsys):
    assert _energy(pretrained, tmp_path / "e", *argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "e" / "manifest.json").exists()


def test_stage_3_runs_on_a_fine_tuned_checkpoint(finetuned3, tmp_path, capsys):
    assert main(["stdp", "--checkpoint", str(finetuned3 / "checkpoint"), "--steps", "2", "--eval-tokens", "64", "--out", str(tmp_path / "s3")]) == 0, \
        capsys.readouterr().err
    summary = json.loads((tmp_path / "s3" / "stdp.json").read_text())
    assert summary["data"] == "ptb" and summary["mean_T"]["after"] <= summary["mean_T"]["before"] == 3


def _ddp_worker(rank, world, port, pretrained, out):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    _tuner(pretrained, out, max_steps=4).run(progress=False)
    dist.destroy_process_group()


def test_two_processes_fine_tune_on_the_loss_curve_of_one(pretrained, tmp_path, monkeypatch):
    import torch.multiprocessing as mp

    from tests.test_train import _free_port

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _tuner(pretrained, tmp_path / "one", max_steps=4).run(progress=False)
    mp.spawn(_ddp_worker, args=(2, _free_port(), pretrained, tmp_path / "two"), nprocs=2, join=True)
    for a, b in zip(_losses(tmp_path / "one"), _losses(tmp_path / "two")):
        assert a == pytest.approx(b, rel=1e-5)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2
