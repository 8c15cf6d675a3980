"""Per-document outcomes of one mode of one run, read from the ``samples.jsonl`` lm-eval wrote.

Each lm-eval sample becomes one row: the task, document id and filter, what kind of request it
was, whether it was right (the task's own per-document ``acc`` or ``exact_match``), lm-eval's
hashes of its document, target and prompt (so two sides can check they asked the same), and the
figures a paired comparison needs:

- ``choice`` (multiple choice): the log-likelihood of every choice, the gold index, the gold
  continuation's log-likelihood and token count;
- ``loglikelihood`` (one continuation, e.g. LAMBADA's last word): its log-likelihood and tokens;
- ``rolling`` (perplexity): the document's total log-likelihood and its token count;
- ``generation``: the filtered answer text.

Token counts come from the model's own tokenizer, encoding a pair the way lm-eval's
``TemplateLM._encode_pair`` does (trailing spaces of the context move to the continuation).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import pandas as pd

from models.load import ModelLoadError, gguf_tokenizer, read_tokenizer

Encode = Callable[[str], list[int]]
PRIMARY = ("acc", "exact_match")  # the per-document correctness lm-eval already computed


def model_encoder(model_path: str | Path) -> Encode:
    """``text -> token ids`` with the tokenizer of the model at ``model_path`` (a .gguf file or a checkpoint folder)."""
    path = Path(model_path)
    if path.suffix == ".gguf":
        tokenizer = gguf_tokenizer(gguf.GGUFReader(str(path)), path)
    elif (path / "tokenizer.json").exists():
        tokenizer = read_tokenizer(path / "tokenizer.json")
    else:
        raise ModelLoadError(f"{path}: no tokenizer to count tokens with (expected a .gguf file or a folder with tokenizer.json)")
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


def continuation_tokens(encode: Encode, context: str, continuation: str) -> int:
    """How many tokens the model scored for ``continuation`` after ``context`` (lm-eval's split of the pair)."""
    if not context:
        return len(encode(continuation))
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    return len(encode(context + continuation)) - len(encode(context))


def _kind(resps: list) -> str:
    if resps and all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], (int, float)) for r in resps):
        return "choice" if len(resps) > 1 else "loglikelihood"
    if len(resps) == 1 and isinstance(resps[0], (int, float)):
        return "rolling"
    if len(resps) == 1 and isinstance(resps[0], str):
        return "generation"
    return "other"


def _correct(sample: dict[str, Any]) -> float | None:
    for metric in PRIMARY:
        if metric in sample.get("metrics", []):
            return float(sample[metric])
    return None


def outcome(sample: dict[str, Any], encode: Encode) -> dict[str, Any]:
    """One sample as a row of per-document figures (see the module docstring)."""
    resps = sample["filtered_resps"]
    kind = _kind(resps)
    row: dict[str, Any] = {"task": sample["task"], "doc_id": int(sample["doc_id"]), "filter": sample["filter"], "kind": kind,
                           "prompt_hash": sample.get("prompt_hash"), "doc_hash": sample.get("doc_hash"), "target_hash": sample.get("target_hash"),
                           "correct": _correct(sample),
                           "correct_norm": float(sample["acc_norm"]) if "acc_norm" in sample.get("metrics", []) else None}
    if kind == "choice":
        gold = int(sample["target"])
        context, continuation = sample["arguments"][gold][:2]
        row.update(choice_lls=[float(r[0]) for r in resps], gold=gold, gold_ll=float(resps[gold][0]),
                   gold_tokens=continuation_tokens(encode, context, continuation))
    elif kind == "loglikelihood":
        context, continuation = sample["arguments"][0][:2]
        row.update(gold_ll=float(resps[0][0]), gold_tokens=continuation_tokens(encode, context, continuation))
    elif kind == "rolling":
        row.update(total_ll=float(resps[0]), tokens=len(encode(sample["arguments"][0][0])))
    elif kind == "generation":
        row.update(answer=resps[0])
    return row


def read_outcomes(mode_folder: Path, encode: Encode) -> pd.DataFrame:
    """Every finished task's per-document outcomes under ``<run>/<mode>/`` (tasks without cost.json are skipped)."""
    rows = []
    for samples in sorted(mode_folder.glob("*/samples.jsonl")):
        if not (samples.parent / "cost.json").exists():
            continue
        suite_task = samples.parent.name
        with open(samples, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    sample = json.loads(line)
                except json.JSONDecodeError:
                    raise ValueError(f"{samples}, line {number}: not valid JSON; delete the task's cost.json to run it again") from None
                rows.append({"suite_task": suite_task, **outcome(sample, encode)})
    return pd.DataFrame(rows)
