"""``snnbench data fetch`` and ``snnbench data list``: the offline data sets of ``tasks/``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tasks.datasets import DataSet, build, list_rows, read_manifest, resolve, set_status
from tasks.fetch import use_data_dir
from tasks.files import check_writable
from tasks.sources import Source, load_sources

from .common import DATA_DIR_HELP


def add_parser(commands) -> None:
    data = commands.add_parser("data", help="fetch and list the offline data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    fetch_parser = data_commands.add_parser("fetch", help="download, verify and build data sets (all non-optional ones by default)")
    fetch_parser.add_argument("names", nargs="*", help="data sets to build (see `snnbench data list`)")
    fetch_parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    fetch_parser.add_argument("--force", action="store_true", help="rebuild even if present")
    fetch_parser.add_argument("--all", action="store_true", help="include optional sets")
    fetch_parser.set_defaults(handler=lambda args: fetch(args.names, args.data_dir, args.force, args.all))
    listing = data_commands.add_parser("list", help="show each data set, its record counts and whether it is present")
    listing.add_argument("--data-dir", help=DATA_DIR_HELP)
    listing.set_defaults(handler=lambda args: list_sets(args.data_dir))


def _fetch_one(dataset: DataSet, root: Path, sources: dict[str, Source], force: bool) -> dict[str, Any]:
    """Build ``dataset`` unless it is present with every file's sha256 as recorded; returns its manifest."""
    status = set_status(dataset, root, sources, verify=True)
    if status.present and not force:
        manifest = read_manifest(root, dataset.name)
        assert manifest is not None
        return manifest
    if status.state in ("damaged", "outdated"):
        print(f"  {dataset.name:<15} {status.state}: {status.reason}; rebuilding")
    return build(dataset, root, sources=sources, force=force)


def fetch(names: list[str], data_dir_override: str | None = None, force: bool = False, include_optional: bool = False) -> int:
    """Build the named data sets (all non-optional ones by default); present, undamaged sets are kept."""
    chosen = resolve(names, include_optional)
    root = use_data_dir(data_dir_override)
    check_writable(root, "--data-dir")
    sources = load_sources()
    print(f"data folder: {root}")
    for dataset in chosen:
        started = time.perf_counter()
        manifest = _fetch_one(dataset, root, sources, force)
        took = time.perf_counter() - started
        print(f"  {dataset.name:<15} {manifest.get('summary', '')}  ({took:.1f} s)")
    return 0


def _state(row: dict[str, Any]) -> str:
    """The state column: present, missing, optional (not built), outdated or damaged."""
    return "optional" if row["state"] == "missing" and row["optional"] else row["state"]


def _detail(row: dict[str, Any]) -> str:
    """The last column: the record counts of a present set, what is wrong with a built one, else the description."""
    if row["state"] == "present":
        return row["summary"]
    return row["reason"] if row["state"] in ("damaged", "outdated") else row["description"]


def list_sets(data_dir_override: str | None = None) -> int:
    """Print every data set with its state (every file's sha256 checked) and the commands that fix what is not present."""
    root = use_data_dir(data_dir_override)
    rows = list_rows(root)
    print(f"data folder: {root}")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"  {r['name']:<{width}}  {r['kind']:<9}  {_state(r):<8}  {_detail(r)}")
    missing = [r["name"] for r in rows if _state(r) == "missing"]
    if missing:
        print(f"\nfetch the missing sets with: snnbench data fetch {' '.join(missing)}")
    broken = [r["name"] for r in rows if r["state"] in ("damaged", "outdated")]
    if broken:
        print(f"\nrebuild the damaged or outdated sets with: snnbench data fetch {' '.join(broken)}")
    return 0
