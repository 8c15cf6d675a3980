"""The error the model loaders raise, in a module of its own so that ``load.py`` and ``hf.py`` share it without
importing each other (``load.py`` dispatches Hugging Face folders to ``hf.py``)."""

from __future__ import annotations


class ModelLoadError(ValueError):
    """A model file is missing, corrupt, unsupported or does not fit its config."""


def one_line(text: object) -> str:
    """``text`` with its whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())
