"""Checksum manifests of checkpoint folders (one process): any change to a listed file's
bytes or length is named, nothing else is; the writing rank hashes its own shards."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbridge_train import checksums

FILES = {"__0_0.distcp": 3000, "__1_0.distcp": 2000, ".metadata": 300, "hf_assets/config.json": 40}


def _folder(root) -> str:
    for name, size in FILES.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(bytes((i * 7 + len(name)) % 251 for i in range(size)))
    return str(root)


def test_a_written_manifest_verifies_and_lists_every_file(tmp_path):
    folder = _folder(tmp_path)
    cost = checksums.write_manifest(folder)
    assert cost.files == len(FILES) and cost.bytes == sum(FILES.values()) and cost.seconds >= 0
    assert sorted(checksums.read_manifest(folder)) == sorted(FILES)
    assert checksums.verify(folder)[0] is None and checksums.is_complete(folder)
    assert not [n for n in os.listdir(folder) if n.startswith(".checksums")]  # no temp left


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(FILES)), st.data())
def test_any_changed_or_cut_file_is_named(tmp_path_factory, name, data):
    folder = _folder(tmp_path_factory.mktemp("ck"))
    checksums.write_manifest(folder)
    path = os.path.join(folder, name)
    size = FILES[name]
    how = data.draw(st.sampled_from(["flip", "truncate", "append", "delete"]))
    if how == "flip":
        at = data.draw(st.integers(0, size - 1))
        with open(path, "r+b") as f:
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ data.draw(st.integers(1, 255))]))
    elif how == "truncate":
        os.truncate(path, data.draw(st.integers(0, size - 1)))
    elif how == "append":
        with open(path, "ab") as f:
            f.write(b"x")
    else:
        os.remove(path)
    problem, _ = checksums.verify(folder)
    assert problem is not None and problem.startswith(path + ": ") and "\n" not in problem
    word = {"flip": "corrupt", "truncate": "truncated", "append": "longer", "delete": "missing"}
    assert word[how] in problem


def test_a_folder_without_manifest_is_not_checked_and_a_broken_one_is_named(tmp_path):
    folder = _folder(tmp_path)
    assert checksums.verify(folder) == (None, checksums.HashCost(0, 0, 0.0))
    (tmp_path / checksums.MANIFEST).write_text("{oops")
    problem, _ = checksums.verify(folder)
    assert problem.startswith(str(tmp_path / checksums.MANIFEST)) and "unreadable" in problem


@pytest.mark.parametrize("name, world, rank", [
    ("__3_0.distcp", 4, 3), ("__3_1.distcp", 2, 1), ("__0_0.distcp", 8, 0),
    (".metadata", 4, 0), ("run_config.yaml", 4, 0), ("x__1_0.distcp", 4, 0)])
def test_each_shard_is_hashed_by_the_rank_that_wrote_it(name, world, rank):
    assert checksums.owner(name, world) == rank


def test_the_manifest_is_json_with_one_line_per_file_and_its_cost(tmp_path):
    import json

    folder = _folder(tmp_path)
    checksums.write_manifest(folder)
    text = (tmp_path / checksums.MANIFEST).read_text()
    data = json.loads(text)
    assert data["algorithm"] == "crc32" and data["hash_seconds"] >= 0
    assert all(sum(name in line for line in text.splitlines()) == 1 for name in FILES)
    assert checksums.measure(folder).bytes == sum(FILES.values())
