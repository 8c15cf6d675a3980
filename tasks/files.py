"""File utilities every layer uses: atomic writes, strict JSON, writable-folder checks, folder locks.

- ``atomic_write_text`` / ``atomic_write_json``: a temporary file in the same folder, fsync, an
  atomic rename; a killed process leaves at most a ``.<name>.<random>.tmp`` file, which
  ``remove_temporaries`` deletes on the next start.
- ``atomic_write_json`` writes strict JSON: NaN and infinities become ``null``, never bare ``NaN``.
- ``check_writable(folder, flag)``: create the folder and prove it can be written, before any
  work starts; a one-line ``ValueError`` naming the flag otherwise.
- ``FolderLock``: one process at a time on a run folder (or a data set build). The lock is an
  ``flock`` on a file holding the owner's pid, so the kernel releases it when its owner dies
  and a stale lock is taken over without asking.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"
LOCK_FILE = ".snnbench.lock"


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so ``json.dumps(allow_nan=False)`` accepts it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def dumps_strict(data: Any, **kwargs: Any) -> str:
    """JSON text with ``null`` for NaN/inf (standard JSON has no NaN); other objects through ``str``."""
    return json.dumps(strict_json(json.loads(json.dumps(data, default=str))), allow_nan=False, **kwargs)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; results are meant to be shared
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Strict JSON (NaN and inf as null), indented and key-sorted, written atomically."""
    return atomic_write_text(path, dumps_strict(data, indent=2, sort_keys=True) + "\n")


def remove_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the ``.*.tmp`` files a killed writer left under ``folder``; returns what was deleted.

    Call it only while holding the folder's lock: another process's temporary file is not stale.
    """
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for path in folder.rglob(f".*{TEMP_SUFFIX}"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def check_writable(folder: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Create ``folder`` (with parents) and prove a file can be written in it; a one-line ValueError if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"{flag} {folder}: cannot write there ({reason}); choose another folder with {flag}") from None
    return folder


class LockedError(ValueError):
    """Another live process holds the lock; the message names it and says what to do."""


class FolderLock:
    """An exclusive lock on ``folder`` for the life of a command: ``with FolderLock(run, "run X"): ...``.

    ``what`` names the thing locked in the error message; ``advice`` says what to do instead.
    The lock file stays behind (empty of meaning once unlocked); only its flock matters.
    """

    def __init__(self, folder: str | os.PathLike[str], what: str, advice: str = "wait for it to finish", name: str = LOCK_FILE) -> None:
        self.path = Path(folder) / name
        self.what = what
        self.advice = advice
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = self.owner()
            os.close(fd)
            who = f"process {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}" if owner else "another process"
            raise LockedError(f"{self.what} is in use by {who}; {self.advice}") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def owner(self) -> dict[str, Any] | None:
        """Who wrote the lock file last (the holder while it is held), or None."""
        try:
            data = json.loads(self.path.read_text() or "null")
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
