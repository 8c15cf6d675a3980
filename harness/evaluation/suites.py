"""Named evaluation suites: lists of lm-eval tasks with the few-shot settings the papers use.

BrainTransformers reports MMLU, BBH, ARC-Challenge and GSM8K for its 3B model; the settings
below are the usual ones for those figures (MMLU 5-shot, BBH 3-shot chain of thought,
ARC-Challenge 25-shot, GSM8K 8-shot chain of thought); the summary of the paper in
../shared/papers does not state them, so treat them as ours. BrainGPT reports perplexity on
two text sets, which the ``braingpt`` suite stands in for (zero-shot by definition).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SuiteTask:
    task: str
    num_fewshot: int | None  # None: the task's own default


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[SuiteTask, ...]
    description: str


def _suite(name: str, description: str, *tasks: tuple[str, int | None]) -> Suite:
    return Suite(name, tuple(SuiteTask(t, n) for t, n in tasks), description)


MMLU = ("snnbench_mmlu", 5)
BBH = ("snnbench_bbh", 3)
ARC_C = ("snnbench_arc_challenge", 25)
ARC_E = ("snnbench_arc_easy", 25)
GSM8K = ("snnbench_gsm8k_cot", 8)

SUITES: dict[str, Suite] = {
    s.name: s
    for s in [
        _suite("ppl", "perplexity on PTB, the WikiText sample, Tiny Shakespeare, webtext and Brown", ("snnbench_ppl", 0)),
        _suite("mmlu", "MMLU, 57 subjects, 5-shot", MMLU),
        _suite("bbh", "BIG-Bench Hard (rebuilt from BIG-bench), 3-shot chain of thought", BBH),
        _suite("arc", "ARC-Challenge and ARC-Easy, 25-shot", ARC_C, ARC_E),
        _suite("gsm8k", "GSM8K, 8-shot chain of thought", GSM8K),
        _suite("lambada", "LAMBADA (OpenAI), zero-shot", ("snnbench_lambada_openai", 0)),
        _suite("braintransformers", "BrainTransformers' table: MMLU, BBH, ARC-C, GSM8K", MMLU, BBH, ARC_C, GSM8K),
        _suite("braingpt", "BrainGPT's Table 1 sets: WikiText and web text perplexity", ("snnbench_braingpt_ppl", 0)),
        _suite(
            "demo",
            "a slice of every suite for `make demo`: one MMLU subject, one BBH subtask, ARC-C, GSM8K, LAMBADA, WikiText perplexity",
            ("snnbench_mmlu_high_school_geography", 5),
            ("snnbench_bbh_boolean_expressions", 3),
            ARC_C,
            GSM8K,
            ("snnbench_lambada_openai", 0),
            ("snnbench_ppl_wikitext", 0),
        ),
    ]
}


def resolve_suite(suite: str | None, tasks: list[str] | None) -> list[SuiteTask]:
    """The tasks of a named suite, or explicit ``tasks`` (``name`` or ``name:shots``); one-line errors."""
    if tasks:
        out = []
        for item in tasks:
            name, _, shots = item.partition(":")
            if shots and not shots.isdigit():
                raise ValueError(f"task {item!r}: the few-shot count after ':' must be a number")
            out.append(SuiteTask(name, int(shots) if shots else None))
        return out
    if suite is None:
        raise ValueError(f"give --suite ({', '.join(SUITES)}) or --tasks")
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    return list(SUITES[suite].tasks)
