"""Token ids of a built corpus: what calibration and quick measurements read."""

from __future__ import annotations

from typing import Any

from .builders.tokenizers import corpus_lines


def text_ids(tokenizer: Any, data_set: str, split: str, tokens: int) -> list[int]:
    """The first ``tokens`` token ids of a built corpus split, read line by line with ``tokenizer`` (a ``tokenizers.Tokenizer``)."""
    ids: list[int] = []
    for line in corpus_lines(data_set, split):
        ids.extend(tokenizer.encode(line + "\n").ids)
        if len(ids) >= tokens:
            break
    if len(ids) < tokens:
        raise ValueError(f"corpus '{data_set}' split '{split}' has only {len(ids)} tokens, {tokens} asked for")
    return ids[:tokens]
