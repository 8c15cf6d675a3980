"""What a builder gets: a temporary output folder, access to raw sources, helpers to write records."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


class BuildError(ValueError):
    """A source's content is not what the builder expects; the message names the file."""


class DataFileError(ValueError):
    """A data file is not what its format says (e.g. a line of a .jsonl file is not JSON); the message names the file and line."""


@dataclass
class BuildContext:
    """``out`` is an empty temporary folder that becomes ``sets/<name>`` once the builder returns.

    ``raw(source)`` gives a source's extracted folder (fetched and verified on demand).
    ``write_jsonl`` records how many records each file holds; the counts go into the manifest.
    """

    name: str
    out: Path
    raw: Callable[[str], Path]
    seed: int = 1234
    counts: dict[str, int] = field(default_factory=dict)

    def write_jsonl(self, relpath: str, records: Iterable[dict[str, Any]]) -> int:
        if not relpath.endswith(".jsonl"):
            raise ValueError(f"relpath must end with .jsonl, got {relpath!r}")
        path = self.out / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with open(path, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1
        self.counts[relpath[: -len(".jsonl")]] = n
        return n

    def write_json(self, relpath: str, data: Any) -> None:
        path = self.out / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def write_text(self, relpath: str, text: str) -> None:
        path = self.out / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def progress(self, iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
        return iter(tqdm(iterable, desc=f"{self.name}: {desc}", total=total, leave=False, unit="item"))

    def require(self, path: Path) -> Path:
        """``path`` if it exists, else a BuildError naming it."""
        if not path.exists():
            raise BuildError(f"{self.name}: expected {path} in the extracted source, it is missing")
        return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a line that is not UTF-8 JSON is a one-line DataFileError naming the file and line."""
    records = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
                reason = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8"
                raise DataFileError(f"{path}, line {number}: not valid JSON ({reason}); the file is damaged or not JSON lines") from None
    return records


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def thousands(n: int) -> str:
    return f"{n:,}"
