"""Paired comparison of two models on the same documents: statistics checked by hand and by simulation,
and the whole path from lm-eval samples with scripted model pairs whose answers are known."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from harness.paired.compare import Margins, compare_outcomes
from harness.paired.documents import continuation_tokens, read_outcomes
from harness.paired.stats import Interval, bootstrap_mean, bootstrap_ratio, choice_distribution, kl_divergence, mcnemar_exact, verdict
from tests.scripted_lm import ScriptedLM, evaluate
from tests.test_data_benchmarks import built, olmo_members  # noqa: F401  (fixtures)


def byte_tokens(text: str) -> list[int]:
    return list(text.encode())


@pytest.mark.parametrize("b, c", [(2, 8), (8, 2), (0, 5), (3, 3), (0, 0), (40, 61)])
def test_mcnemar_is_the_exact_binomial_by_hand(b, c):
    n = b + c
    by_hand = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n)
    assert mcnemar_exact(b, c) == pytest.approx(by_hand, rel=1e-12)
    if n:
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, n, 0.5).pvalue, rel=1e-9)
    assert mcnemar_exact(2, 8) == pytest.approx(112 / 1024)  # 2 * (1 + 10 + 45) / 2^10


def test_the_paired_bootstrap_interval_covers_the_true_difference():
    """300 simulated evaluations of 200 documents: the reference is right with p = 0.6, the candidate
    flips right -> wrong with p = 0.1 and wrong -> right with p = 0.05: true difference -4 points."""
    rng = np.random.default_rng(0)
    truth = 100 * (0.4 * 0.05 - 0.6 * 0.10)
    covered = 0
    for trial in range(300):
        ref = rng.random(200) < 0.6
        flip = np.where(ref, rng.random(200) < 0.10, rng.random(200) < 0.05)
        cand = ref ^ flip
        interval = bootstrap_mean(100 * (cand.astype(float) - ref), resamples=2000, seed=trial)
        covered += interval.low <= truth <= interval.high
    assert 0.90 <= covered / 300 <= 0.99


def test_agresti_min_by_hand_and_where_the_bootstrap_has_no_width():
    from harness.paired.stats import agresti_min, right_wrong_difference

    b, c, n = 3, 7, 50  # 3 right only on the reference, 7 only on the candidate
    center, half = (7.5 - 3.5) / 52, 1.959963984540054 * math.sqrt((3.5 + 7.5) - (7.5 - 3.5) ** 2 / 52) / 52
    interval = agresti_min(b, c, n)
    assert interval.value == pytest.approx(4 / 50) and (interval.low, interval.high) == pytest.approx((center - half, center + half))
    same = np.ones(200)
    assert bootstrap_mean(same - same).width == 0  # the bootstrap of identical outcomes says nothing
    widened = right_wrong_difference(same, same)
    assert widened.low < 0 < widened.high and verdict(widened, 3.0, 200) == "equivalent within +-3"
    assert verdict(right_wrong_difference(np.ones(2), np.ones(2)), 3.0, 2) == "inconclusive (2 documents)"


def test_the_ratio_bootstrap_resamples_documents_not_tokens():
    nll = np.array([10.0, 20.0, 30.0])
    tokens = np.array([10.0, 10.0, 10.0])
    interval = bootstrap_ratio(nll, tokens, resamples=4000)
    assert interval.value == pytest.approx(2.0)
    assert 1.0 <= interval.low < 2.0 < interval.high <= 3.0  # documents of 1, 2, 3 nats/token resampled


@pytest.mark.parametrize("interval, margin, expected", [
    (Interval(-1.0, -2.0, -0.5), 3, "lower (within +-3)"),
    (Interval(-5.0, -8.0, -4.0), 3, "lower"),
    (Interval(4.0, 1.0, 7.0), 3, "higher"),
    (Interval(0.2, -1.5, 1.9), 3, "equivalent within +-3"),
    (Interval(0.2, -4.5, 4.9), 3, "inconclusive"),
])
def test_the_verdict_reads_the_interval_against_the_margin(interval, margin, expected):
    assert verdict(interval, margin) == expected


def test_kl_and_per_token_differences_equal_hand_computations():
    choices_ref, choices_cand = [math.log(0.5), math.log(0.3), math.log(0.2)], [math.log(0.2), math.log(0.3), math.log(0.5)]
    kl_by_hand = 0.5 * math.log(0.5 / 0.2) + 0.3 * math.log(1.0) + 0.2 * math.log(0.2 / 0.5)
    assert kl_divergence(choice_distribution(np.array(choices_ref)), choice_distribution(np.array(choices_cand))) == pytest.approx(kl_by_hand)
    common = {"suite_task": "t", "task": "t", "filter": "none", "prompt_hash": "h"}
    reference = pd.DataFrame([
        {**common, "doc_id": 0, "kind": "choice", "correct": 1.0, "choice_lls": choices_ref, "gold": 0, "gold_ll": choices_ref[0], "gold_tokens": 2},
        {**common, "doc_id": 1, "kind": "choice", "correct": 0.0, "choice_lls": [-3.0, -1.0], "gold": 0, "gold_ll": -3.0, "gold_tokens": 4},
    ])
    candidate = pd.DataFrame([
        {**common, "doc_id": 0, "kind": "choice", "correct": 0.0, "choice_lls": choices_cand, "gold": 0, "gold_ll": choices_cand[0], "gold_tokens": 2},
        {**common, "doc_id": 1, "kind": "choice", "correct": 0.0, "choice_lls": [-2.0, -1.5], "gold": 0, "gold_ll": -2.0, "gold_tokens": 4},
    ])
    rows = compare_outcomes(reference, candidate).set_index(["level", "quantity"])
    task = rows.loc["task"]
    per_token_by_hand = ((math.log(0.2) - math.log(0.5)) + (-2.0 + 3.0)) / (2 + 4)
    assert task.loc["gold log-likelihood difference", "value"] == pytest.approx(per_token_by_hand)
    kl_second = kl_divergence(choice_distribution(np.array([-3.0, -1.0])), choice_distribution(np.array([-2.0, -1.5])))
    assert task.loc["KL(reference || candidate) of the choices", "value"] == pytest.approx((kl_by_hand + kl_second) / 2)
    assert task.loc["accuracy difference", "value"] == pytest.approx(-50.0)
    assert task.loc["flips right -> wrong", "value"] == 1 and task.loc["flips wrong -> right", "value"] == 0
    assert task.loc["agreement", "value"] == pytest.approx(0.5)  # doc 0 changed its choice, doc 1 kept it


def test_perplexity_documents_by_hand():
    common = {"suite_task": "ppl", "task": "ppl", "filter": "none", "kind": "rolling", "prompt_hash": "h", "correct": None}
    reference = pd.DataFrame([{**common, "doc_id": i, "total_ll": ll, "tokens": n} for i, (ll, n) in enumerate([(-100.0, 50), (-300.0, 150)])])
    candidate = pd.DataFrame([{**common, "doc_id": i, "total_ll": ll, "tokens": n} for i, (ll, n) in enumerate([(-110.0, 50), (-303.0, 150)])])
    rows = compare_outcomes(reference, candidate, Margins(nats_per_token=0.1)).set_index(["level", "quantity"])
    by_hand = (10.0 + 3.0) / 200  # candidate minus reference nats per token
    assert rows.loc[("task", "nats per token difference"), "value"] == pytest.approx(by_hand)
    assert rows.loc[("task", "perplexity ratio"), "value"] == pytest.approx(math.exp(by_hand))
    # per document 0.2 and 0.02 nats/token: resampling two documents gives [0.02, 0.2], beyond the 0.1 margin
    assert rows.loc[("task", "nats per token difference"), "ci_low"] == pytest.approx(0.02)
    assert rows.loc[("task", "nats per token difference"), "verdict"] == "inconclusive (2 documents)"  # too few to read


def test_continuation_tokens_split_the_pair_as_lm_eval_does():
    assert continuation_tokens(byte_tokens, "Answer: ", "B") == 2  # the context's trailing space moves to the continuation
    assert continuation_tokens(byte_tokens, "Answer:", " B") == 2
    assert continuation_tokens(byte_tokens, "", "abc") == 3


def _write_run(folder, suite_task, samples):
    """A mode folder as `snnbench eval` writes it: <suite task>/samples.jsonl (every subtask's samples) and a cost.json."""
    task_folder = folder / suite_task
    task_folder.mkdir(parents=True)
    (task_folder / "samples.jsonl").write_text("".join(json.dumps({"task": t, **s}, default=str) + "\n" for t, rows in samples.items() for s in rows))
    (task_folder / "cost.json").write_text("{}")


def test_scripted_model_pairs_through_lm_eval(built, tmp_path):  # noqa: F811
    """The reference always prefers answer A; the candidate prefers B on the subjects a-m. Every
    figure is recomputed here from the documents' gold answers, independently of the module."""
    reference = ScriptedLM(loglikelihood=lambda ctx, cont: (0.0 if cont == " A" else -1.0, False))

    def flipped(ctx: str) -> bool:
        subject = ctx.split("about ")[1].split(".")[0]
        return subject[0] < "n"

    candidate = ScriptedLM(loglikelihood=lambda ctx, cont: (0.0 if cont == (" B" if flipped(ctx) else " A") else -1.0, False))
    runs = {}
    for name, lm in (("ref", reference), ("cand", candidate)):
        results = evaluate(lm, ["snnbench_mmlu"], num_fewshot=0)
        _write_run(tmp_path / name, "snnbench_mmlu", results["samples"])
        runs[name] = read_outcomes(tmp_path / name, byte_tokens)
    rows = compare_outcomes(runs["ref"], runs["cand"])
    overall = rows[rows["level"] == "overall"].set_index("quantity")
    docs = runs["ref"].merge(runs["cand"], on=["task", "doc_id"], suffixes=("_r", "_c"))
    right_ref = docs["gold_r"] == 0
    right_cand = docs.apply(lambda r: r["gold_c"] == (1 if r["task"].removeprefix("snnbench_mmlu_")[0] < "n" else 0), axis=1)
    up, down = int((~right_ref & right_cand).sum()), int((right_ref & ~right_cand).sum())
    assert len(docs) == 114 and overall.loc["accuracy difference", "documents"] == 114
    assert overall.loc["flips wrong -> right", "value"] == up and overall.loc["flips right -> wrong", "value"] == down
    assert overall.loc["accuracy difference", "value"] == pytest.approx(100 * (up - down) / 114)
    assert overall.loc["accuracy difference", "p_value"] == pytest.approx(mcnemar_exact(up, down))
    flipped_docs = docs["task"].str.removeprefix("snnbench_mmlu_").str[0] < "n"
    assert overall.loc["agreement", "value"] == pytest.approx((~flipped_docs).mean())
    suite = rows[(rows["level"] == "suite task") & (rows["quantity"] == "accuracy difference")]
    assert list(suite["suite_task"]) == ["snnbench_mmlu"] and suite["documents"].iloc[0] == 114


def test_documents_asked_with_other_prompts_are_not_compared():
    common = {"suite_task": "t", "task": "t", "filter": "none", "doc_id": 0, "kind": "loglikelihood", "correct": 1.0, "gold_ll": -1.0, "gold_tokens": 1}
    with pytest.raises(ValueError, match="asked with different prompts"):
        compare_outcomes(pd.DataFrame([{**common, "prompt_hash": "a"}]), pd.DataFrame([{**common, "prompt_hash": "b"}]))
