"""Token streams of a corpus and the batches a training step draws from them.

A corpus split is one long stream of token ids (each line of ``<split>.txt`` followed by an
end-of-sentence / end-of-text token). The batch of step s is a function of (seed, step) only:
``global_batch`` draws the same windows whatever the number of processes, and each process
takes its contiguous share, so a 2-process run sees exactly the batches of a 1-process run
and a resumed run sees exactly the batches the interrupted one would have.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path

import torch
from tokenizers import Tokenizer

from models.arch.braingpt import TAG_ID, TAGGED_CORPORA, UNK_TAG
from tasks.builders.base import read_jsonl
from tasks.builders.tokenizers import corpus_lines, load_tokenizer, train_tokenizer
from tasks.loader import split_files


def corpus_tokenizer(data_set: str, kind: str, vocab_size: int | None, folder: Path) -> Tokenizer:
    """The tokenizer for training on ``data_set``: ``gpt2`` (the fetched GPT-2 BPE), or ``word`` / ``bpe``
    trained on the corpus' train split only and saved to ``folder/tokenizer.json`` (reused when present)."""
    if kind == "gpt2":
        return load_tokenizer("gpt2-tokenizer")
    if kind not in ("word", "bpe"):
        raise ValueError(f"tokenizer must be word, bpe or gpt2, got {kind!r}")
    path = folder / "tokenizer.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    folder.mkdir(parents=True, exist_ok=True)
    return train_tokenizer(kind, corpus_lines(data_set, "train"), vocab_size, path)


def end_token(tokenizer) -> int:
    for name in ("<eos>", "<|endoftext|>", "</s>"):
        token = tokenizer.token_to_id(name)
        if token is not None:
            return token
    raise ValueError("the tokenizer has no end-of-text token (<eos>, <|endoftext|> or </s>)")


def token_stream(tokenizer, data_set: str, split: str) -> torch.Tensor:
    """All lines of a corpus split, each followed by the end token, as one 1-D LongTensor."""
    eos = end_token(tokenizer)
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(corpus_lines(data_set, split), add_special_tokens=False):
        ids.extend(encoding.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def tag_streams(tokenizer, data_set: str, split: str) -> dict[str, torch.Tensor]:
    """``ids`` as ``token_stream`` makes them (each sentence + ``<eos>``) and the universal tag of every id (BrainGPT 3.1.1).

    Brown: each token takes the tag (``utags``) of the word its last character falls in (a piece that
    is only a space: the word after it), found from the tokenizer's character offsets in the record's
    ``text`` (the words joined by spaces). With the word-level tokenizer that is one tag per word,
    exactly Brown's; with a subword tokenizer every piece of a word carries the word's tag. ``<eos>``
    gets ``<unk>``. Any other corpus has no tags: every tag is ``<unk>`` and the POS loss is masked out.
    """
    if data_set not in TAGGED_CORPORA:
        ids = token_stream(tokenizer, data_set, split)
        return {"ids": ids, "tags": torch.full_like(ids, UNK_TAG)}
    files = split_files(data_set)
    if split not in files:
        raise ValueError(f"corpus {data_set!r} has no {split} split ({', '.join(files)})")
    records = read_jsonl(files[split])
    eos = end_token(tokenizer)
    encodings = tokenizer.encode_batch([r["text"] for r in records], add_special_tokens=False)
    ids: list[int] = []
    tags: list[int] = []
    for record, encoding in zip(records, encodings):
        word_tags = [TAG_ID.get(t, UNK_TAG) for t in record["utags"]]
        next_word = list(accumulate(len(w) + 1 for w in record["tokens"]))  # where each word's successor starts
        text = record["text"]
        for start, end in encoding.offsets:
            last = end - 1 if text[end - 1 : end] != " " else end  # a lone space piece belongs to the word after it
            word = bisect_right(next_word, last) if end > start else len(word_tags)
            tags.append(word_tags[word] if word < len(word_tags) else UNK_TAG)
        ids.extend(encoding.ids)
        ids.append(eos)
        tags.append(UNK_TAG)
    return {"ids": torch.tensor(ids, dtype=torch.long), "tags": torch.tensor(tags, dtype=torch.long)}


def training_streams(tokenizer, data_set: str, split: str, names: Sequence[str] = ("ids",)) -> dict[str, torch.Tensor]:
    """The aligned streams a model trains on (its class's ``training_streams``): token ``ids``, with ``tags`` their POS tags."""
    return tag_streams(tokenizer, data_set, split) if "tags" in names else {"ids": token_stream(tokenizer, data_set, split)}


def window_starts(length: int, seq_len: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Offsets of the ``batch_size`` windows of step ``step``: a function of (seed, step) alone."""
    if length <= seq_len + 1:
        raise ValueError(f"the training stream has {length} tokens, fewer than one window of {seq_len + 1}")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, length - seq_len - 1, (batch_size,), generator=generator).tolist()


def global_batch(stream: torch.Tensor, seq_len: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """(batch_size, seq_len + 1) windows at offsets drawn from (seed, step) alone."""
    return torch.stack([stream[s : s + seq_len + 1] for s in window_starts(len(stream), seq_len, batch_size, seed, step)])


def global_batches(streams: dict[str, torch.Tensor], seq_len: int, batch_size: int, seed: int, step: int) -> dict[str, torch.Tensor]:
    """The same windows cut from every aligned stream (e.g. token ids and their part-of-speech tags)."""
    starts = window_starts(len(streams["ids"]), seq_len, batch_size, seed, step)
    return {name: torch.stack([stream[s : s + seq_len + 1] for s in starts]) for name, stream in streams.items()}


def shard(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This process' contiguous share of a global batch (the batch size must divide evenly)."""
    if batch.shape[0] % world_size:
        raise ValueError(f"batch size {batch.shape[0]} does not divide over {world_size} processes")
    per = batch.shape[0] // world_size
    return batch[rank * per : (rank + 1) * per]


def eval_windows(stream: torch.Tensor, context_window: int, stride: int) -> list[tuple[torch.Tensor, int]]:
    """Sliding context windows over a whole stream: (the window's tokens, how many of its last targets to score).

    Every token after the first is scored once; each has at least context_window - stride tokens of context
    except in the first window.
    """
    if not 0 < stride <= context_window:
        raise ValueError(f"stride must be in 1..{context_window}, got {stride}")
    out = []
    n = len(stream)
    end = min(context_window + 1, n)
    out.append((stream[:end], end - 1))
    while end < n:
        new_end = min(end + stride, n)
        start = max(0, new_end - context_window - 1)
        out.append((stream[start:new_end], new_end - end))
        end = new_end
    return out
