"""``snnbench bench``: the statistics helpers, the MFU FLOP formula, the table writer and a quick
end-to-end run. Benchmarks are measurements, not tests: nothing here asserts a speed."""

import json
import math

import pytest
import torch

from benchmarks import neuron
from benchmarks.flops import llama_forward_flops, llama_matmul_params
from benchmarks.table import Goal, Row, Side, markdown_table
from benchmarks.timing import paired_ratios, paired_times, per_call, summarize
from harness.cli import main
from models.arch.llama import LlamaConfig, LlamaForCausalLM


def test_summarize_and_paired_ratios():
    s = summarize([3.0, 1.0, 2.0, 10.0])
    assert (s["min"], s["median"], s["max"], s["n"]) == (1.0, 2.5, 10.0, 4)
    assert summarize([4.0])["median"] == 4.0
    assert paired_ratios([2.0, 3.0], [1.0, 4.0]) == [2.0, 0.75]
    assert paired_ratios([1.0], [0.0]) == [math.inf]
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        summarize([])


def test_paired_times_interleaves_and_warms_up():
    calls = []
    ours = lambda: calls.append("a") or 1.0  # noqa: E731
    ref = lambda: calls.append("b") or 2.0  # noqa: E731
    a, b = paired_times(ours, ref, repeats=3)
    assert a == [1.0] * 3 and b == [2.0] * 3
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then alternating order
    assert per_call(lambda: None, min_seconds=0.0)() >= 0


def test_goal_judgement():
    goal = Goal(">=", 1.0, ">= 1.0x (goal 1.3x)", stretch=1.3)
    assert goal.met(1.4) == "yes" and goal.met(0.9) == "no" and goal.met(1.1).startswith("yes (stretch")
    assert Goal("<=", 1.05, "<= +5%").met(1.02) == "yes" and Goal("<=", 1.05, "<= +5%").met(1.2) == "no"


def test_flop_formula_against_a_hand_count():
    config = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=12, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16)
    # per layer: q 8x8 + k 8x4 + v 8x4 + o 8x8 + gate/up/down 3 x 8x12 = 64+32+32+64+288 = 480; head 8x10 = 80
    assert llama_matmul_params(config) == 2 * 480 + 80
    flops = llama_forward_flops(config, batch=3, seq_len=5)
    assert flops["dense"] == 2 * 1040 * 15
    assert flops["attention"] == 2 * 4 * 3 * 25 * 8  # layers x 4 x batch x L^2 x heads*head_dim
    assert flops["total"] == 31200 + 4800


def test_flop_formula_matches_the_models_own_counters():
    """2 x the Dense MACs the op counters see in the projections and attention matmuls of a forward."""
    from models.arch.float_ops import CountedLinear, FloatMatmul
    from models.spiking.counters import OpCounter

    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=40, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    model = LlamaForCausalLM(config).eval()
    kinds = {name: type(m) for name, m in model.named_modules()}
    with OpCounter(model) as counter, torch.no_grad():
        model(torch.randint(0, 50, (2, 7)))
    dense = sum(s.Dense for name, s in counter.totals.items() if kinds.get(name) in (CountedLinear, FloatMatmul))
    assert 2 * dense == llama_forward_flops(config, 2, 7)["total"]


def _row(**changes):
    row = Row("1a", "adapter ann vs HFLM, ARC-like", Side("adapter ann", "tok/s", summarize([1200.0, 1000.0, 1100.0])),
              Side("HFLM", "tok/s", summarize([800.0, 900.0, 1000.0])), summarize([1.5, 1.25, 1.1]), "speed", "speed ratio",
              Goal(">=", 1.0, ">= 1.0x (goal 1.3x)", stretch=1.3))
    for k, v in changes.items():
        setattr(row, k, v)
    return row


def test_table_writer():
    ok = _row()
    ok.judge()
    missing = _row(id="7a", reference=Side("SpikingJelly", "ms/call", None, note="not installed | pip install"), ratio=None, goal=None)
    missing.judge()
    overhead = _row(id="4a", ratio=summarize([1.02, 1.03, 1.10]), ratio_kind="overhead", goal=Goal("<=", 1.05, "<= +5%"))
    overhead.judge(tiny_model=True)
    mfu = _row(id="5a", ratio=summarize([0.41, 0.45, 0.43]), ratio_kind="fraction", goal=Goal(">=", 0.4, ">= 40%"))
    mfu.judge()
    lines = markdown_table([ok, missing, overhead, mfu]).splitlines()
    assert lines[0] == "| benchmark | ours | reference | ratio (median, min-max) | goal | met? |"
    assert all(line.count("|") == 7 for line in lines)  # a "|" in a cell is escaped, never a new column
    assert "adapter ann: 1,100 tok/s (1,000-1,200)" in lines[2] and "1.25x (1.1-1.5x)" in lines[2]
    assert lines[2].endswith("| yes (stretch 1.3x not met) |")
    assert "SpikingJelly: not installed / pip install" in lines[3] and lines[3].endswith("| - | - | - |")
    assert "+3.0% (+2.0 to +10.0%)" in lines[4] and lines[4].endswith("| n/a (tiny model) |")
    assert "43.0% (41.0-45.0%)" in lines[5] and lines[5].endswith("| yes |")


def test_bench_quick_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--only", "3,6", "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    ids = [row["id"] for row in report["rows"]]
    assert ids == ["3a", "3b", "3c", "3d", "3e", "3f", "6"]
    assert report["quick"] and report["repeats"] == 3 and not report["errors"]
    assert {"platform", "cpu_count", "torch_threads"} <= set(report["machine"]) and "torch" in report["versions"]
    for row in report["rows"]:
        assert row["ours"]["stats"]["n"] == 3 and row["ratio"]["n"] == 3
    assert all("bit-identical" in row["notes"][0] for row in report["rows"][:6])
    kinds = " ".join(row["benchmark"] for row in report["rows"])
    for kind in ("Synapsis", "SNNMatmul", "SNNSoftmax", "SNNSiLU", "SNNMultiply", "SNNRMSNorm", "training step"):
        assert kind in kinds
    table = (out / "bench.md").read_text()
    assert "| benchmark | ours | reference | ratio (median, min-max) | goal | met? |" in table
    assert table.count("\n| 3") == 6 and "\n| 6. training step" in table
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_missing_smollm2_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path / "no-data"))
    assert main(["bench", "--only", "1,3", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "snnbench data fetch smollm2-135m" in err and "--quick" in err
    assert not (tmp_path / "b").exists()
    assert main(["bench", "--only", "9"]) == 2
    assert "--only" in capsys.readouterr().err


def test_quick_falls_back_to_a_tiny_model_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path / "no-data"))
    monkeypatch.setattr(neuron, "spikingjelly_if", lambda: (None, "spikingjelly not importable (test)"))
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--only", "5,7", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["model"]["fallback"].startswith("tiny random Llama")
    rows = {row["id"]: row for row in report["rows"]}
    assert rows["5a"]["met"] == "n/a (tiny model)" and "not SmolLM2" in rows["5a"]["benchmark"]
    assert rows["7a"]["reference"]["stats"] is None and rows["7a"]["ratio"] is None
    assert "spikingjelly not importable (test)" in (out / "bench.md").read_text()


def test_benchmark_2_times_every_request_shape_with_and_without_counters(tmp_path, monkeypatch):
    """snn-fused beside ann: 25-shot, rolling, 0-shot, and greedy generation after short and long prompts at each batch size,
    op counters on (as snnbench eval runs) and off."""
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--only", "2", "--repeats", "1", "--out", str(out)]) == 0
    rows = {row["id"]: row for row in json.loads((out / "bench.json").read_text())["rows"]}
    assert list(rows) == ["2a", "2b", "2c", *(f"2{x}{b}" for x in "defg" for b in (1, 4))]
    for x, prompts, counters in (("d", "short", "on"), ("e", "short", "off"), ("f", "long", "on"), ("g", "long", "off")):
        assert f"{prompts} prompts, counters {counters}" in rows[f"2{x}4"]["benchmark"]
        assert f"op counters {'on as in snnbench eval' if counters == 'on' else 'off'}" in rows[f"2{x}4"]["notes"][0]
    long_tokens, short_tokens = (int(rows[r]["notes"][0].split(" prompts, ")[1].split(" prompt tokens")[0].replace(",", "")) for r in ("2f1", "2d1"))
    assert long_tokens > 2 * short_tokens  # the long prompts are long
    assert all(row["ratio"]["n"] == 1 for row in rows.values())
    from models.spiking import counters

    assert not counters.counting()  # every row's op counters stopped with it: none counts the next benchmark
