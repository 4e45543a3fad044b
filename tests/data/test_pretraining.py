"""Pretraining datasets through megatron-core: blends by weight, per-split blends, mock data,
reused index caches, and one clear error for each kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbridge_data.errors import DataError
from mbridge_data.indexed import check_indexed_pair, index_bytes
from mbridge_data.pretraining import build_pretraining_datasets
from mbridge_data.tokenizers.null import NullTokenizer

TOK = NullTokenizer(vocab_size=1024, eod_id=1023)


def gpt_config(**fields):
    from mbridge_config import GPTDatasetConfig

    fields.setdefault("sequence_length", 16)
    return GPTDatasetConfig(reset_position_ids=False, reset_attention_mask=False,
                            eod_mask_loss=False, **fields)


def write_dataset(prefix, token: int, docs: int = 40, length: int = 33):
    """Documents made only of ``token`` (then EOD), so a sample tells which dataset it is from."""
    lengths = np.full(docs, length, dtype=np.int32)
    body = np.full((docs, length), token, dtype=np.uint16)
    body[:, -1] = TOK.eod
    prefix.parent.mkdir(parents=True, exist_ok=True)
    (prefix.parent / f"{prefix.name}.bin").write_bytes(body.tobytes())
    (prefix.parent / f"{prefix.name}.idx").write_bytes(index_bytes(lengths, np.uint16))
    return str(prefix)


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    root = tmp_path_factory.mktemp("blend")
    return [write_dataset(root / f"ds{i}", token=10 + i) for i in range(3)]


def source_of(sample) -> int:
    tokens = sample["tokens"].numpy()
    return int(tokens[tokens != TOK.eod][0]) - 10


@settings(max_examples=10)
@given(st.lists(st.integers(1, 20), min_size=3, max_size=3))
def test_blend_samples_each_dataset_in_proportion_to_its_weight(three, tmp_path_factory, weights):
    cache = tmp_path_factory.mktemp("cache")
    cfg = gpt_config(blend=three, blend_weights=[float(w) for w in weights], split="100,0,0",
                     path_to_cache=str(cache))
    n = 600
    train, valid, test = build_pretraining_datasets(cfg, TOK, [n, 0, 0])
    assert valid is None and test is None
    counts = np.bincount([source_of(train[i]) for i in range(n)], minlength=3)
    expected = n * np.asarray(weights) / sum(weights)
    # Megatron's blending is deterministic error-minimising: far tighter than sampling noise.
    assert np.all(np.abs(counts - expected) <= 0.02 * n + 2), (counts, expected)
    assert np.all(np.abs(counts - expected) <= 4 * np.sqrt(expected) + 2)


def test_blend_per_split_uses_separate_datasets(three, tmp_path):
    cfg = gpt_config(blend_per_split=[[three[0]], [three[1]], [three[2]]], split=None,
                     path_to_cache=str(tmp_path))
    train, valid, test = build_pretraining_datasets(cfg, TOK, [20, 5, 5])
    assert {source_of(train[i]) for i in range(20)} == {0}
    assert {source_of(valid[i]) for i in range(5)} == {1}
    assert {source_of(test[i]) for i in range(5)} == {2}


def test_index_cache_is_written_once_and_reused(three, tmp_path):
    cfg = gpt_config(blend=three[:1], split="1,0,0", path_to_cache=str(tmp_path / "c"))
    first, _, _ = build_pretraining_datasets(cfg, TOK, [30, None, None])
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("*")}
    assert len([p for p in files if p.suffix == ".npy"]) == 3  # document, sample, shuffle
    again, _, _ = build_pretraining_datasets(cfg, TOK, [30, None, None])
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("*")} == files
    assert all(np.array_equal(first[i]["tokens"], again[i]["tokens"]) for i in range(30))


def test_the_index_cache_follows_the_files_not_their_path(tmp_path):
    """Preprocessed again to the same prefix (fewer documents): fresh indices, not the stale
    ones of the old files (megatron-core's path-keyed cache gave an IndexError)."""
    prefix = write_dataset(tmp_path / "data" / "ds", token=5, docs=40)
    cfg = gpt_config(blend=[prefix], split="1,0,0", path_to_cache=str(tmp_path / "c"))
    build_pretraining_datasets(cfg, TOK, [30, None, None])
    write_dataset(tmp_path / "data" / "ds", token=6, docs=3)
    train, _, _ = build_pretraining_datasets(cfg, TOK, [30, None, None])
    assert {int(t) for i in range(30) for t in train[i]["tokens"]} == {6, TOK.eod}
    assert len(list((tmp_path / "c").iterdir())) == 2  # one folder per identity


@pytest.mark.parametrize("vocab, bad", [(1024, None), (1023, 1023), (600, 1023)])
def test_token_ids_beyond_the_vocabulary_are_refused_naming_the_file(tmp_path, vocab, bad):
    prefix = write_dataset(tmp_path / "ds", token=5)
    cfg = gpt_config(blend=[prefix], split="1,0,0", path_to_cache=str(tmp_path / "c"))
    if bad is None:
        build_pretraining_datasets(cfg, TOK, [10, None, None], vocab_size=vocab)
        return
    with pytest.raises(DataError) as error:
        build_pretraining_datasets(cfg, TOK, [10, None, None], vocab_size=vocab)
    message = str(error.value)
    assert message.startswith(f"{prefix}.bin: token id {bad} ") and f"={vocab}" in message
    assert "\n" not in message


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 65000), min_size=1, max_size=300))
def test_max_token_id_is_the_largest_token_and_remembered_per_identity(tmp_path_factory, ids):
    from mbridge_data import indexed

    root = tmp_path_factory.mktemp("max")
    prefix = root / "ds"
    tokens = np.asarray(ids, dtype=np.uint16)
    (root / "ds.bin").write_bytes(tokens.tobytes())
    (root / "ds.idx").write_bytes(index_bytes(np.asarray([len(ids)], np.int32), np.uint16))
    assert indexed.max_token_id(prefix, root) == max(ids)
    memo = json.loads((root / "token_ids.json").read_text())
    assert memo[str(prefix.resolve())][1] == max(ids)
    indexed._MAX_IDS.clear()  # the on-disk memo answers now
    assert indexed.max_token_id(prefix, root) == max(ids)


def test_default_cache_lives_beside_the_data(tmp_path):
    prefix = write_dataset(tmp_path / "data" / "ds", token=5)
    build_pretraining_datasets(gpt_config(blend=[prefix], split="1,0,0"), TOK, [10, None, None])
    assert any((tmp_path / "data" / "cache").iterdir())


def test_mock_dataset_needs_no_files():
    from mbridge_config import MockGPTDatasetConfig

    cfg = MockGPTDatasetConfig(sequence_length=32, reset_position_ids=False,
                               reset_attention_mask=False, eod_mask_loss=False)
    train, valid, test = build_pretraining_datasets(cfg, TOK, [8, 4, 4])
    assert train[0]["tokens"].shape == (32,) and len(valid) >= 4 and len(test) >= 4


def test_rank_zero_builds_the_cache_first_then_the_others_reuse_it(three, tmp_path):
    """Two gloo ranks: both get the same samples; the cache is built once."""
    from multirank import run_ranks

    def body(rank, world_size, prefix, cache):
        import os

        cfg = gpt_config(blend=[prefix], split="1,0,0", path_to_cache=cache)
        train, _, _ = build_pretraining_datasets(cfg, TOK, [30, None, None])
        return [train[i]["tokens"].tolist() for i in range(30)], sorted(
            name for _, _, names in os.walk(cache) for name in names)

    results = run_ranks(body, 2, three[2], str(tmp_path), cpu_runtime=False, timeout=120)
    assert results[0] == results[1]
    assert len([f for f in results[0][1] if f.endswith(".npy")]) == 3


# ------------------------------------------------------------------------------- bad input


def test_blend_weights_must_match_the_blend(three):
    with pytest.raises(DataError, match=r"^dataset\.blend_weights: 2 weights for 3 datasets"):
        build_pretraining_datasets(gpt_config(blend=three, blend_weights=[1.0, 2.0]), TOK,
                                   [10, 1, 1])
    with pytest.raises(DataError, match=r"blend_weights_per_split\[train\]: 1 weights for 2"):
        build_pretraining_datasets(
            gpt_config(blend_per_split=[three[:2], None, None], blend_weights_per_split=[[1.0],
                       None, None], split=None), TOK, [10, None, None])


def test_weights_without_sample_counts_is_a_clear_error(three):
    with pytest.raises(DataError, match="megatron-core could not build the datasets: size_is_none"):
        build_pretraining_datasets(gpt_config(blend=three, blend_weights=[1, 1, 1], split="1,0,0"),
                                   TOK, [10, None, None])


def test_missing_dataset_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.idx and .*nope\.bin: not found"):
        build_pretraining_datasets(gpt_config(blend=[str(tmp_path / "nope")]), TOK, [1, 1, 1])


@pytest.mark.parametrize("which, cut", [(".bin", 10), (".idx", 5), (".idx", 200)])
def test_a_truncated_pair_is_named_before_megatron_reads_it(tmp_path, which, cut):
    prefix = write_dataset(tmp_path / "ds", token=3)
    path = tmp_path / f"ds{which}"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut] if cut < len(data) else data[:cut])
    with pytest.raises(DataError) as info:
        build_pretraining_datasets(gpt_config(blend=[prefix]), TOK, [1, 1, 1])
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    assert "truncated" in str(info.value)


def test_an_intact_pair_passes_the_check(tmp_path):
    prefix = write_dataset(tmp_path / "ds", token=3, docs=7)
    assert check_indexed_pair(prefix) == (7, 8)


@pytest.mark.parametrize("split", ["", "a,b", "0,0,0", "1,2,3,4"])
def test_a_bad_split_string(three, split):
    with pytest.raises(DataError, match="dataset.split: expected up to three"):
        build_pretraining_datasets(gpt_config(blend=three, split=split), TOK, [1, 1, 1])


def test_a_split_left_without_documents_is_named(three, tmp_path):
    # 40 documents: "949,50,1" gives the test split round(0.999 * 40) .. 40 = none.
    cfg = gpt_config(blend=three, split="949,50,1", path_to_cache=str(tmp_path))
    with pytest.raises(DataError, match="leaves none of the 40 documents of .*ds0 for the test"):
        build_pretraining_datasets(cfg, TOK, [4, 2, 2])
    cfg.split = "949,50,0"  # no test split at all: fine
    train, valid, test = build_pretraining_datasets(cfg, TOK, [4, 2, 0])
    assert len(train) >= 4 and len(valid) >= 2 and test is None
