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
    limit: int | None = None  # documents per leaf task (lm-eval's limit; a group's limit applies to each subtask); None: all
    max_gen_toks: int | None = None  # cap on generated tokens per answer; None: the task's own
    max_length: int | None = None  # context window for this task (e.g. shorter perplexity windows); None: the run's

    def limit_under(self, cap: int | None) -> int | None:
        """The documents per leaf task when ``--limit cap`` is also given: the smaller of the two."""
        return min(x for x in (self.limit, cap) if x is not None) if self.limit is not None or cap is not None else None

    def context_window(self, run_max_length: int | None) -> int | None:
        """The context length of this task: the run's ``--max-length`` when given, else the suite's own."""
        return run_max_length or self.max_length

    def generation(self, cap: int | None) -> dict | None:
        """lm-eval ``gen_kwargs`` for this task under ``--max-gen-toks cap`` (the flag wins over the suite's own cap)."""
        tokens = cap or self.max_gen_toks
        return {"max_gen_toks": tokens} if tokens else None


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[SuiteTask, ...]
    description: str


def _suite(name: str, description: str, *tasks: tuple) -> Suite:
    return Suite(name, tuple(SuiteTask(*t) for t in tasks), description)


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
            "fidelity",
            "does the SNN still do what its ANN does: sized so SmolLM2-135M's ANN and 8-bit SNN finish in about 55 minutes on "
            "2 CPU cores (measured): 1,000 ARC-Easy and 600 ARC-Challenge documents 0-shot, 8 per MMLU subject (456) 0-shot, "
            "500 LAMBADA, 8 PTB (in windows of 512 tokens) and all 20 WikiText perplexity documents, 16 GSM8K (8-shot) and one per BBH subtask (27, 3-shot) "
            "with answers capped at 96 tokens",
            ("snnbench_arc_easy", 0, 1000),
            ("snnbench_arc_challenge", 0, 600),
            ("snnbench_mmlu", 0, 8),
            ("snnbench_lambada_openai", 0, 500),
            ("snnbench_ppl_ptb", 0, 8, None, 512),
            ("snnbench_ppl_wikitext", 0, None),
            (*GSM8K, 16, 96),
            (*BBH, 1, 96),
        ),
        _suite(
            "braintransformers-cpu",
            "BrainTransformers' four benchmarks sized for about 3 hours on 2 CPU cores (ANN and SNN): MMLU 5-shot with 9 documents "
            "per subject (513), ARC-Challenge 25-shot 500, BBH 3-shot 2 per subtask (54) and GSM8K 8-shot 40, answers capped at 96 tokens",
            (*MMLU, 9),
            (*BBH, 2, 96),
            (*ARC_C, 500),
            (*GSM8K, 40, 96),
        ),
        _suite(
            "demo",
            "for `make demo`: 500 ARC-Easy documents 0-shot (enough for a conclusive paired comparison) and 2 documents of each "
            "other benchmark (one MMLU subject, one BBH subtask, ARC-C, GSM8K, LAMBADA, WikiText perplexity) to show the pipeline",
            ("snnbench_arc_easy", 0, 500),
            ("snnbench_mmlu_high_school_geography", 5, 2),
            ("snnbench_bbh_boolean_expressions", 3, 2, 32),
            (*ARC_C, 2),
            (*GSM8K, 2, 32),
            ("snnbench_lambada_openai", 0, 2),
            ("snnbench_ppl_wikitext", 0, 2),
        ),
    ]
}


def parse_task(item: str) -> SuiteTask:
    """``name``, ``name:shots`` or ``name:shots:limit`` (empty shots: the task's default); one-line errors."""
    name, *rest = item.split(":")
    if len(rest) > 2 or any(part and not part.isdigit() for part in rest):
        raise ValueError(f"task {item!r}: write NAME, NAME:SHOTS or NAME:SHOTS:LIMIT with whole numbers")
    shots = int(rest[0]) if rest and rest[0] else None
    limit = int(rest[1]) if len(rest) > 1 and rest[1] else None
    if limit is not None and limit < 1:
        raise ValueError(f"task {item!r}: the limit must be >= 1")
    return SuiteTask(name, shots, limit)


def resolve_suite(suite: str | None, tasks: list[str] | None) -> list[SuiteTask]:
    """The tasks of a named suite, or explicit ``tasks`` (see ``parse_task``); one-line errors."""
    if tasks:
        return [parse_task(item) for item in tasks]
    if suite is None:
        raise ValueError(f"give --suite ({', '.join(SUITES)}) or --tasks")
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    return list(SUITES[suite].tasks)
