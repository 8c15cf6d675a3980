"""Load a built data set for lm-eval: the ``custom_dataset`` function every task YAML points at.

A task YAML says ``custom_dataset: !function utils.load`` and ``dataset_kwargs: {data_set:
mmlu, subset: anatomy}``; lm-eval calls ``load(**metadata, **dataset_kwargs)`` and gets a
``DatasetDict`` with one split per ``<split>.jsonl`` file of ``sets/<data_set>[/<subset>]``
that the set's manifest lists. Every file returned is checked against its sha256 first, so a
damaged set is a one-line ``DataNotFoundError``, never a silent partial evaluation.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from .builders.base import read_jsonl
from .datasets import DataNotFoundError, set_dir, set_files, verified_file
from .fetch import data_dir

__all__ = ["DataNotFoundError", "load", "split_files"]


def split_files(data_set: str, subset: str | None = None, root: Path | None = None) -> dict[str, Path]:
    """The ``<split>.jsonl`` files of a built data set (or of one of its subsets), each sha256-verified."""
    root = root or data_dir()
    prefix = PurePosixPath(subset) if subset else PurePosixPath()
    relpaths = sorted(
        rel for rel in set_files(root, data_set) if PurePosixPath(rel).parent == prefix and rel.endswith(".jsonl")
    )
    if not relpaths:
        raise DataNotFoundError(f"data set '{data_set}' has no subset '{subset}' in {set_dir(root, data_set)}")
    return {PurePosixPath(rel).stem: verified_file(root, data_set, rel) for rel in relpaths}


def load(data_set: str, subset: str | None = None, **_: Any):
    """lm-eval ``custom_dataset``: a DatasetDict of the set's splits."""
    import datasets

    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(read_jsonl(path)) for split, path in split_files(data_set, subset).items()}
    )
