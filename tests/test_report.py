"""Reports: deterministic markdown/CSV, self-contained HTML, what is missing named; reproduce and ablate tables."""

import json
import math

import pandas as pd
import pytest

from harness.cli import main
from harness.report.build import build_report
from harness.experiments.reproduce import braintransformers_table
from tests.micro import fake_ptb
from tests.test_train import TOML  # the micro training setup


def _eval_run(root, name="run1", fail=True, bits=8, accuracies=(0.5, 0.45)):
    run = root / name
    (run / "ann" / "snnbench_arc_easy").mkdir(parents=True)
    (run / "snn-fused" / "snnbench_arc_easy").mkdir(parents=True)
    tasks = [{"task": "snnbench_arc_easy", "num_fewshot": 0}, {"task": "snnbench_gsm8k_cot", "num_fewshot": 8}]
    settings = {"model": {"name": "m", "sha256": "ab" * 32, "mode": "ann"}, "modes": ["ann", "snn-fused"], "tasks": tasks, "limit": 10,
                "conversion": {"bits": bits, "time_steps": 2 ** (bits - 1) - 1, "granularity": "smoothed"}, "max_length": None,
                "max_gen_toks": None, "batch_size": 8, "device": "cpu", "energy": {"meters": "none", "presets": [{"name": "45nm-fp32"}]}}
    manifest = {"modes": ["ann", "snn-fused"], "tasks": tasks, "settings": settings,
                "machine": {"processor": "x86_64", "cpu_count": 2, "memory_gib": 23.5, "gpus": []}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    metrics, costs, energy = [], [], []
    for mode, acc, est in (("ann", accuracies[0], 1e-3), ("snn-fused", accuracies[1], 2e-4)):
        common = {"model": "m", "mode": mode, "suite_task": "snnbench_arc_easy", "task": "snnbench_arc_easy"}
        metrics.append({**common, "alias": "arc_easy", "metric": "acc", "filter": "none", "value": acc, "stderr": 0.05, "documents": 10})
        costs.append({**common, "tokens": 100, "kind": "timed", "source": "wall clock (model forwards)", "quantity": "seconds", "unit": "s", "value": 1.0, "per_token": 0.01})
        for quantity, value in (("spikes", 0 if mode == "ann" else 500), ("Effective_ACs", 0 if mode == "ann" else 900), ("Effective_MACs", 800 if mode == "ann" else 10)):
            costs.append({**common, "tokens": 100, "kind": "counted", "source": "op counters", "quantity": quantity, "unit": "ops", "value": value, "per_token": value / 100})
        costs.append({**common, "tokens": 100, "kind": "estimated", "source": "synops:45nm-fp32", "quantity": "energy", "unit": "J", "value": est * 100, "per_token": est})
        energy.append({**common, "kind": "estimated", "source": "synops:45nm-fp32", "joules": est * 100, "tokens": 100, "joules_per_token": est})
        (run / mode / "snnbench_arc_easy" / "cost.json").write_text(json.dumps({"total": {"tokens": 100}}))
        (run / mode / "snnbench_arc_easy" / "ops_by_module.json").write_text(json.dumps(
            {"model.layers.0.self_attn.q_proj": {"Effective_ACs": 700, "Effective_MACs": 0, "float_ops": 10},
             "model.layers.0.mlp.act": {"Effective_ACs": 200, "Effective_MACs": 0, "float_ops": 0}}))
    for file, rows in (("metrics.csv", metrics), ("cost.csv", costs), ("energy.csv", energy)):
        pd.DataFrame(rows).to_csv(run / file, index=False)
    if fail:
        (run / "ann" / "snnbench_gsm8k_cot").mkdir()
        (run / "ann" / "snnbench_gsm8k_cot" / "error.json").write_text(json.dumps({"error": "RuntimeError: simulated crash"}))
    return run


def _train_run(root):
    run = root / "train1"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"name": "llama-qat", "arch": "llama", "mode": "qat", "parameters": 1000, "steps": 4, "test_perplexity": 99.5,
                                                 "snn_fused_test_perplexity": 99.5, "tokens_per_second": 10.0, "train_seconds": 3.0}))
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 5 - s / 4, **({"valid_perplexity": 200 - s} if s % 2 == 0 else {})}) + "\n" for s in range(1, 5)))
    return run


def test_report_is_deterministic_and_names_what_is_missing(tmp_path):
    runs = [_eval_run(tmp_path), _train_run(tmp_path), tmp_path / "absent"]
    unknown = tmp_path / "old"
    unknown.mkdir()
    (unknown / "results_v0.txt").write_text("old format")
    runs.append(unknown)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({"modes": ["ann"], "tasks": [{"task": "snnbench_mmlu"}]}))
    runs.append(empty)
    first = build_report(runs, "r", tmp_path / "reports")
    md = (first / "report.md").read_text()
    csvs = {p.name: p.read_bytes() for p in (first / "tables").glob("*.csv")}
    second = build_report(runs, "r", tmp_path / "reports")
    assert (second / "report.md").read_text() == md
    assert {p.name: p.read_bytes() for p in (second / "tables").glob("*.csv")} == csvs
    assert "ann / snnbench_gsm8k_cot failed: RuntimeError: simulated crash" in md
    assert "snn-fused / snnbench_gsm8k_cot was not run" in md
    assert "absent: not a folder" in md and "old: no snnbench results recognised" in md
    assert "empty: no metrics.csv" in md and "empty: ann / snnbench_mmlu was not run" in md
    assert "| m | snnbench_arc_easy | acc | none | 0.5 | 0.05 | 0.45 | 0.05 | 10 |" in md  # ANN and SNN side by side, with stderr and documents
    assert {"metrics.csv", "cost.csv", "cost_by_task.csv", "energy.csv", "runs.csv", "training.csv", "synops_by_kind_snn-fused.csv"} <= set(csvs)
    html = (first / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html and "http://" not in html and "https://" not in html
    assert (first / "plots" / "energy_per_mode.png").exists() and (first / "plots" / "convergence.png").exists()


def test_report_never_averages_runs_of_different_settings(tmp_path):
    eight = _eval_run(tmp_path, "bits8", fail=False, bits=8, accuracies=(0.5, 0.45))
    four = _eval_run(tmp_path, "bits4", fail=False, bits=4, accuracies=(0.5, 0.25))
    report = build_report([eight, four], "two", tmp_path / "reports")
    side = pd.read_csv(report / "tables" / "metrics_side_by_side.csv")
    assert {"bits8: snn-fused", "bits4: snn-fused", "bits8: ann", "bits4: ann"} <= set(side.columns)
    row = side.iloc[0]
    assert row["bits8: snn-fused"] == 0.45 and row["bits4: snn-fused"] == 0.25  # never their mean 0.35
    runs = pd.read_csv(report / "tables" / "runs.csv")
    assert dict(zip(runs["run"], runs["bits"])) == {"bits4": 4, "bits8": 8}
    cost = pd.read_csv(report / "tables" / "cost_by_task.csv")
    assert len(cost) == 4 and set(cost["run"]) == {"bits8", "bits4"}
    assert (report / "plots" / "synops_by_kind_bits4_snn-fused.png").exists()


def _paired_csv(run, agree_every: int):
    """paired.csv of 40 ARC-Easy documents: the candidate disagrees on every ``agree_every``-th one."""
    from harness.paired.compare import compare_outcomes

    common = {"suite_task": "snnbench_arc_easy", "task": "snnbench_arc_easy", "filter": "none", "kind": "choice", "prompt_hash": "h", "gold": 0, "gold_tokens": 2}
    ref = pd.DataFrame([{**common, "doc_id": i, "correct": 1.0, "choice_lls": [-1.0, -2.0], "gold_ll": -1.0} for i in range(40)])
    cand = pd.DataFrame([{**common, "doc_id": i, "correct": float(i % agree_every != 0), "choice_lls": [-1.1, -2.0] if i % agree_every else [-3.0, -2.0],
                          "gold_ll": -1.1 if i % agree_every else -3.0} for i in range(40)])
    rows = compare_outcomes(ref, cand)
    rows.insert(0, "reference", "ann")
    rows.insert(1, "candidate", "snn-fused")
    rows.to_csv(run / "paired.csv", index=False)


def test_report_opens_with_the_paired_headline_and_its_forest_plot(tmp_path):
    run = _eval_run(tmp_path, fail=False)
    _paired_csv(run, agree_every=4)
    report = build_report([run], "paired", tmp_path / "reports")
    md = (report / "report.md").read_text()
    assert md.index("Does the SNN still work?") < md.index("Evaluation (lm-eval)")  # the first answer comes first
    assert "snn-fused vs ann, snnbench_arc_easy, 40 documents: accuracy -25.0 points, 95% CI [" in md
    assert "agreement 75%" in md and "McNemar p = " in md and "estimated energy 0.2x under 45nm-fp32" in md
    assert "inconclusive" in md  # the rule is stated
    assert (report / "plots" / "paired_forest.png").exists() and (report / "tables" / "paired.csv").exists()


def test_report_cli_with_nothing_reportable(tmp_path, capsys):
    folder = tmp_path / "nothing"
    folder.mkdir()
    assert main(["report", str(folder), "--out", str(tmp_path / "reports")]) == 0
    md = (tmp_path / "reports" / "nothing" / "report.md").read_text()
    assert "none of the given folders held results" in md and "no snnbench results recognised" in md


def test_braintransformers_table_puts_paper_beside_ours():
    """MMLU pooled over two subjects of 25 documents: the ANN right on 15, the SNN on 14 (one flip)."""
    from harness.paired.compare import compare_outcomes

    def side(right: int) -> pd.DataFrame:
        return pd.DataFrame([{"suite_task": "snnbench_mmlu", "task": f"snnbench_mmlu_{subject}", "doc_id": i, "filter": "none", "kind": "choice",
                              "prompt_hash": "h", "correct": float(25 * k + i < right), "correct_norm": None, "choice_lls": [-1.0, -2.0],
                              "gold": 0, "gold_ll": -1.0, "gold_tokens": 1} for k, subject in enumerate(("anatomy", "virology")) for i in range(25)])

    paired = compare_outcomes(side(15), side(14))
    paired.insert(0, "reference", "ann")
    paired.insert(1, "candidate", "snn-fused")
    table, notes = braintransformers_table(paired, "smollm2-135m")
    mmlu = table[table["benchmark"] == "MMLU"].iloc[0]
    assert mmlu["paper"] == 63.2 and mmlu["snnbench_ann"] == pytest.approx(30.0) and mmlu["snnbench_snn"] == pytest.approx(28.0)
    assert mmlu["snn_minus_ann"] == pytest.approx(-2.0) and mmlu["ci_low"] < -2.0 < mmlu["ci_high"] and mmlu["documents"] == 50
    assert "3B" in mmlu["paper_scale"] and mmlu["verdict"] == "inconclusive"
    assert any("MMLU: the SNN scores 28.0 against its ANN's 30.0 on the same 50 documents: -2.0 points, 95% CI [" in n for n in notes)
    assert any(n.startswith("BBH: not measured") for n in notes)


def test_ablate_grid_end_to_end(tmp_path, monkeypatch):
    config = fake_ptb(tmp_path, monkeypatch, TOML)
    for mode in ("ann", "qat"):
        assert main(["train", "--arch", "llama", "--mode", mode, "--config", str(config), "--out", str(tmp_path / mode)]) == 0
    out = tmp_path / "ablate"
    assert main(["ablate", "--ann", str(tmp_path / "ann" / "checkpoint"), "--qat", str(tmp_path / "qat" / "checkpoint"), "--bits", "4,8",
                 "--keep-float", "silu", "--window", "8", "--eval-tokens", "64", "--stdp-steps", "5", "--out", str(out)]) == 0
    table = pd.read_csv(out / "ablation.csv")
    assert list(table["stage"]) == ["ann", "ann->snn", "ann->snn", "ann->snn + stdp", "qat->snn", "qat->snn", "qat->snn + stdp", "qat->snn"]
    assert table.loc[table["stage"] == "ann", "spikes_per_token"].iloc[0] == 0
    assert (table.loc[table["stage"] != "ann", "spikes_per_token"] > 0).all()
    assert set(table["time_steps"].dropna()) == {7, 127}
    assert (out / "ablation.md").exists() and (out / "ablation.png").exists()
    assert main(["ablate", "--ann", str(tmp_path / "qat" / "checkpoint"), "--out", str(out)]) == 2  # a QAT model given as the float one


def test_reproduce_braingpt_reads_the_ablation_and_stage3_folders(tmp_path, capsys):
    """Table 1 from braingpt-ablate's ablation.csv (missing models named), Tables 2-3 from stdp.json."""
    from harness.cli import main

    ablation = tmp_path / "ablation"
    ablation.mkdir()
    (ablation / "ablation.csv").write_text(
        "variant,arch,parameters,steps,test_perplexity\nbraingpt,braingpt,2216656,300,140.5\nttt,ttt,2090000,300,150.25\n")
    (ablation / "convergence.csv").write_text("step,tokens,braingpt,ttt\n50,100,300,320\n100,200,200,210\n")
    (ablation / "ablation.json").write_text(json.dumps({"train": {"data": "brown"}, "convergence": {
        "target_perplexity": 210.0, "target_step": 100, "fast_reaches_target_at_step": 100, "fewer_steps": 0.0}}))
    energy = {"joules_per_token": 2e-6, "source": "synops:45nm-int8", "spikes_per_token": 10.0}
    stdp = tmp_path / "stdp"
    stdp.mkdir()
    (stdp / "stdp.json").write_text(json.dumps({
        "data": "brown", "mean_T": {"before": 127, "after": 100.5}, "max_T": {"before": 127, "after": 120},
        "perplexity": {"before": 140.0, "after": 141.4, "change": 0.01},
        "estimated_energy": {"before": energy, "after": {**energy, "joules_per_token": 1e-6}, "qat_ann": {**energy, "joules_per_token": 1e-6, "spikes_per_token": 0}}}))
    out = tmp_path / "out"
    assert main(["reproduce", "braingpt", "--from", str(ablation), "--stage3", str(stdp), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table1 = (out / "braingpt" / "table1.csv").read_text()
    assert "BrainGPT,42.87,55.23" in table1 and "140.5" in table1 and "150.25" in table1
    assert "Llama: not in the ablation folder" in printed and "Mamba-2: not in the ablation folder" in printed
    table3 = (out / "braingpt" / "table3.csv").read_text().splitlines()
    assert table3[1].startswith("before STDP,127,127,140") and table3[2].startswith("after STDP,100.5,120,141.4")
    assert "the SNN costs 2.00x the QAT ANN per token: the claim does not hold" in printed  # said, not hidden
    assert main(["reproduce", "braingpt", "--from", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def test_report_into_an_unwritable_folder_is_one_line_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["report", str(_eval_run(tmp_path)), "--out", str(tmp_path / "file" / "reports")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "cannot write there" in err and err.count("\n") == 1


def test_display_tables_read_in_units():
    """Counts shown in one SI unit per column, energy in millijoules per token; the CSV keeps raw values."""
    import pandas as pd

    from harness.report.build import per_token_millijoules, readable_counts

    table = pd.DataFrame({"tokens": [1000, 0], "Effective_MACs": [3.265e11, 7.4e9], "spikes": [12, 0], "estimated J, synops:x": [0.75, 0.1]})
    shown = readable_counts(table, ["Effective_MACs", "spikes"])
    assert list(shown.columns) == ["tokens", "Effective_MACs (G)", "spikes", "estimated J, synops:x"]
    assert list(shown["Effective_MACs (G)"]) == [326.5, 7.4] and list(shown["spikes"]) == [12, 0]
    energy = per_token_millijoules(table, ["estimated J, synops:x"])
    assert energy["estimated mJ/token, synops:x"].iloc[0] == 0.75 and pd.isna(energy["estimated mJ/token, synops:x"].iloc[1])
