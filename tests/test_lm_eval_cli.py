"""`snnbench lm-eval`: lm-eval's own CLI with snnbench's model and tasks, on a tiny model and tiny task data
(the fixtures of test_eval_cli): lm-eval's standard output files, the same scores as `snnbench eval`, the CPU
fallback of lm-eval's cuda:0 default, calibration progress, batch_size=auto, and the declared entry point."""

import json
import logging
import tomllib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.cli.lm_eval_cmd import tasks_folder, with_tasks
from harness.evaluation.adapter import SNNBenchLM, auto_batch_size, parse_batch_size
from tests.test_eval_cli import olmo_members, setup  # noqa: F401  (fixtures: tiny smollm2-135m, webtext, lambada, arc)

ROOT = Path(__file__).resolve().parents[1]
FALLBACK = "CUDA is not available here, running on the CPU instead of"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback needs a machine without CUDA")


@pytest.fixture(autouse=True)
def lm_eval_logging(monkeypatch):
    """lm-eval's CLI binds its log handler to the sys.stderr of its first call, once per process; pytest gives each test
    its own: each test gets a handler of its own, removed afterwards."""
    import lm_eval.utils

    logger = logging.getLogger("lm_eval")
    before = list(logger.handlers)
    monkeypatch.setattr(lm_eval.utils, "_LOGGING_CONFIGURED", False)
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    yield
    for handler in [h for h in logger.handlers if h not in before]:
        logger.removeHandler(handler)


def lm_eval_args(out: Path, mode: str, *extra: str) -> list[str]:
    return ["lm-eval", "--model", "snnbench", "--model_args", f"pretrained=smollm2-135m,mode={mode}", "--tasks", "snnbench_arc_easy",
            "--num_fewshot", "1", "--limit", "2", "--seed", "1234", "--output_path", str(out), "--log_samples", *extra]


def only(folder: Path, pattern: str) -> Path:
    found = list(folder.rglob(pattern))
    assert len(found) == 1, f"{pattern} under {folder}: {found}"
    return found[0]


def scores(samples: list[dict]) -> dict[int, list[float]]:
    """doc_id -> the log-likelihood of each answer choice."""
    return {s["doc_id"]: [float(r[0]) for r in s["filtered_resps"]] for s in samples}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@no_cuda
def test_lm_eval_cli_writes_its_files_with_the_scores_of_snnbench_eval(setup, capsys):
    out = setup / "lm-eval-out"
    args = lm_eval_args(out, "snn-fused", "--batch_size", "2")  # no --device: lm-eval's default cuda:0
    args[args.index("snnbench_arc_easy")] = "snnbench_arc_easy,snnbench_lambada_openai"
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count(FALLBACK) == 1 and "Traceback" not in err
    assert "converting smollm2-135m to snn-fused (8 bits): calibrating on 1024 tokens of webtext" in err
    assert "calibrating:" in err and err.index(FALLBACK) < err.index("calibrating:")  # said before the work, then its progress
    results = json.loads(only(out, "results_*.json").read_text())
    assert results["config"]["model"] == "snnbench" and results["n-shot"] == {"snnbench_arc_easy": 1, "snnbench_lambada_openai": 1}

    assert main(["eval", "--model", "smollm2-135m", "--modes", "snn-fused", "--tasks", "snnbench_arc_easy:1", "snnbench_lambada_openai:1",
                 "--limit", "2", "--meters", "none", "--batch-size", "2", "--run-id", "r1"]) == 0
    for task, documents in (("snnbench_arc_easy", 1), ("snnbench_lambada_openai", 2)):  # the fake sets' test splits hold 1 and 2
        ours = setup / "results" / "r1" / "snn-fused" / task
        expected = json.loads((ours / "results.json").read_text())["results"][task]
        got = results["results"][task]
        metrics = [k for k in expected if "," in k and "_stderr" not in k]
        assert metrics and {k: got[k] for k in metrics} == pytest.approx({k: expected[k] for k in metrics}, rel=1e-9), task
        samples = scores(read_jsonl(only(out, f"samples_{task}_*.jsonl")))
        reference = scores(read_jsonl(ours / "samples.jsonl"))
        assert len(samples) == documents and set(samples) == set(reference)  # the same documents
        for doc, lls in samples.items():
            assert lls == pytest.approx(reference[doc], rel=1e-6, abs=1e-6)


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_on_a_cpu_build_runs_on_the_cpu_with_one_line(setup, capsys, device):
    out = setup / "o"
    assert main(lm_eval_args(out, "ann", "--device", device)) == 0
    err = capsys.readouterr().err
    assert err.count(FALLBACK) == 1 and f"{FALLBACK} {device}" in err and "Traceback" not in err
    assert "calibrating" not in err  # ann: nothing to calibrate
    only(out, "results_*.json")


@no_cuda
def test_batch_size_auto_is_eight_on_a_cpu(setup, capsys):
    out = setup / "o"
    assert main(lm_eval_args(out, "ann", "--batch_size", "auto:4", "--device", "cpu")) == 0
    results = json.loads(only(out, "results_*.json").read_text())
    assert results["config"]["batch_size"] == "auto:4" and results["config"]["batch_sizes"] == [8]
    assert "batch_size: auto:4 (8)" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["big", "0", "auto:x", "-3"])
def test_a_bad_batch_size_is_one_line_before_any_work(setup, capsys, monkeypatch, value):
    def forbidden(*args, **kwargs):
        raise AssertionError("the model was loaded before batch_size was checked")

    monkeypatch.setattr("harness.evaluation.adapter.load_model", forbidden)
    assert main(lm_eval_args(setup / "o", "snn-fused", "--batch_size", value, "--device", "cpu")) == 2
    err = capsys.readouterr().err
    line = [e for e in err.splitlines() if e.startswith("snnbench lm-eval: error:")]
    assert len(line) == 1 and "batch_size must be" in line[0] and "Traceback" not in err
    assert not (setup / "o").exists()


def test_batch_size_values():
    assert [parse_batch_size(v) for v in (None, 1, "16", "auto", "auto:4")] == [8, 1, 16, "auto", "auto"]
    for bad in ("auto:", "eight", "0", 0):
        with pytest.raises(ValueError, match="batch_size must be"):
            parse_batch_size(bad)


def test_auto_batch_size_probes_powers_of_two_on_cuda_only():
    probed: list[int] = []

    def probe(size: int) -> None:  # a GPU that holds 16 sequences of a full window
        probed.append(size)
        if size > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    assert auto_batch_size(torch.device("cpu"), probe) == 8 and probed == []  # nothing probed on a CPU
    assert auto_batch_size(torch.device("cpu"), probe, largest=4) == 4
    assert auto_batch_size(torch.device("cuda", 0), probe) == 16 and probed == [1, 2, 4, 8, 16, 32]
    assert auto_batch_size(torch.device("cuda", 0), probe, largest=12) == 8
    assert auto_batch_size(torch.device("cuda", 0), lambda size: None) == 64  # lm-eval's default max_batch_size

    def nothing_fits(size: int) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(ValueError, match="does not fit in GPU memory; give model_args max_length="):
        auto_batch_size(torch.device("cuda", 0), nothing_fits)


def test_include_path_is_added_unless_given_or_asking_for_help():
    folder = tasks_folder()
    assert (folder / "arc" / "arc_easy.yaml").exists()
    assert with_tasks(["--model", "snnbench"], folder) == ["--model", "snnbench", "--include_path", str(folder)]
    assert with_tasks(["ls", "tasks"], folder) == ["ls", "tasks", "--include_path", str(folder)]
    for unchanged in ([], ["--help"], ["run", "-h"], ["run"], ["--tasks", "x", "--include_path", "mine"], ["--include_path=mine"]):
        assert with_tasks(unchanged, folder) == unchanged


def test_help_and_exit_status_are_lm_evals(capsys):
    assert main(["lm-eval", "--help"]) == 0
    first, _, rest = capsys.readouterr().out.partition("\n\n")
    assert first.startswith("snnbench lm-eval: lm-eval's command line with model 'snnbench'") and rest.startswith("usage: lm-eval")
    assert main(["lm-eval", "run", "--help"]) == 0
    assert "--include_path" in capsys.readouterr().out
    assert main(["lm-eval", "--no-such-flag"]) == 2  # lm-eval's argparse error, its status
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_the_lm_eval_models_entry_point_is_declared():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["lm_eval.models"]
    assert declared == {"snnbench": "harness.evaluation.adapter:SNNBenchLM"}
    point = EntryPoint("snnbench", declared["snnbench"], "lm_eval.models")
    assert point.load() is SNNBenchLM
    installed = {e.name: e.value for e in entry_points(group="lm_eval.models")}
    assert installed.get("snnbench") == declared["snnbench"], "the installed metadata lacks it: reinstall (make install, or pip install -e .)"


def test_misspelt_or_inapplicable_model_args_are_refused():
    """A typo in --model_args would otherwise be ignored and the run made in another mode than asked."""
    from benchmarks.workload import tiny_random_model
    from harness.evaluation.adapter import SNNBenchLM

    with pytest.raises(ValueError, match="model_args: unknown 'bitz', 'mdoe'; known: "):
        SNNBenchLM.create_from_arg_string("pretrained=smollm2-135m,bitz=4,mdoe=ann")
    loaded = tiny_random_model()
    loaded.model.spiking = loaded.model.spiking.with_mode("snn-fused")  # as a converted model says of itself
    with pytest.raises(ValueError, match="bits: tiny-random is already a snn-fused model"):
        SNNBenchLM.create_from_arg_obj({"model": loaded, "bits": 4, "device": "cpu"})


def test_data_parallel_ranks_take_their_own_gpu_even_under_lm_evals_cuda_0(monkeypatch):
    import torch

    from harness.evaluation.placement import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device("cuda:0", world_size=2) == torch.device("cuda", 1)
    assert pick_device("cuda:0", world_size=1) == torch.device("cuda", 0)
