"""`snnbench neurtransformer` end to end on a micro configuration and a tiny fake Penn Treebank."""

import csv
import json

import pytest

from harness.cli import main
from harness.experiments.neurtransformer import load_neurtransformer_config
from harness.experiments.neurtransformer_table import COLUMNS
from tests.micro import fake_ptb, toml_table, train_table

MICRO = (
    train_table(seq_len=8, max_steps=4, warmup_steps=1, eval_interval=4, eval_tokens=32, eval_stride=8, checkpoint_interval=4, seed=7)
    + toml_table("neurtransformer", ssa_time_steps=4, calibration_batches=1, finetune_steps=3, finetune_batch_size=2, eval_tokens=64, energy_windows=2)
    + toml_table("model.gpt2-small", hidden_size=8, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16)
    + toml_table("model.gpt2-medium", hidden_size=12, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16)
    + toml_table("model.gpt2-large", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16)
)


@pytest.fixture
def micro(tmp_path, monkeypatch):
    return fake_ptb(tmp_path, monkeypatch, MICRO)


def test_neurtransformer_command_writes_the_table(micro, tmp_path, capsys):
    out = tmp_path / "nt"
    assert main(["neurtransformer", "--config", str(micro), "--out", str(out), "--surrogate", "sigmoid"]) == 0
    printed = capsys.readouterr().out
    with open(out / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["gpt2-small", "gpt2-medium", "gpt2-large"]
    assert list(rows[0]) == [key for key, _ in COLUMNS]
    for row in rows:
        assert all(row[key] != "" for key, _ in COLUMNS)
        assert float(row["ppl_ann"]) > 1 and float(row["ppl_snn"]) > 1
        assert -1 <= float(row["cos_hidden"]) <= 1 and 0 <= float(row["top1_agreement"]) <= 1
        assert float(row["ssa_nj_per_token"]) > 0 and float(row["asa_nj_per_token"]) > 0
        assert row["energy_preset"] == "45nm-fp32"
    params = [int(r["parameters"]) for r in rows]
    assert params == sorted(params) and len(set(params)) == 3  # increasing width and depth
    md = (out / "table.md").read_text()
    assert md.startswith("| model | layers | hidden | parameters | PPL ANN |") and "SSA energy reduction %" in md and "45nm-fp32" in md
    data = json.loads((out / "neurtransformer.json").read_text())
    first = data["results"][0]
    assert first["snn_equals_qat"] is True and first["surrogate"] == "sigmoid" and first["finetune_steps"] == 3
    assert first["energy"]["ssa_ops"]["Effective_MACs"] == 0 and first["energy"]["asa_ops"]["Effective_ACs"] == 0
    assert set(first["energy"]["presets"]) == {"45nm-fp32", "45nm-int8"}
    assert (out / "gpt2-small" / "finetune.jsonl").read_text().count("\n") == 3
    assert "gpt2-large" in printed and "wrote" in printed
    # a second run reuses the finished sizes
    assert main(["neurtransformer", "--config", str(micro), "--out", str(out), "--sizes", "gpt2-small"]) == 0
    assert "reusing" in capsys.readouterr().out


def test_neurtransformer_bad_settings(micro, tmp_path, capsys):
    assert main(["neurtransformer", "--config", str(micro), "--out", str(tmp_path / "x"), "--surrogate", "relu"]) == 2
    assert "surrogate must be one of" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"sizes \['gpt2-xl'\] are not in"):
        load_neurtransformer_config(str(micro), sizes=["gpt2-xl"])
    config, specs = load_neurtransformer_config(str(micro), {"max_steps": 2})
    assert [s.train.max_steps for s in specs] == [2, 2, 2] and specs[0].train.warmup_steps <= 1
