"""Packing: FFD never overfills and loses nothing; packs keep every token with its own loss mask
and sequence, cu_seqlens cut attention at sequence boundaries; packed files are reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import write_jsonl
from mbridge_data.errors import DataError
from mbridge_data.finetuning.sft import Sample
from mbridge_data.packing.dataset import PackedDataset, collate_packed
from mbridge_data.packing.ffd import first_fit_decreasing
from mbridge_data.packing.files import pack_samples
from mbridge_data.tokenizers.null import NullTokenizer

PAD = -5


@given(st.lists(st.integers(0, 50), max_size=200), st.integers(50, 120))
def test_ffd_never_overfills_and_places_every_item_once(lengths, capacity):
    packs = first_fit_decreasing(lengths, capacity)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in p) <= capacity for p in packs)
    assert all(p for p in packs)
    # First fit: no item could have gone into an earlier pack (checked on the final state,
    # which only has less room than when the item was placed).
    lower_bound = -(-sum(lengths) // capacity)
    assert len(packs) <= max(1, 2 * lower_bound)


def test_ffd_rejects_an_item_longer_than_the_pack():
    with pytest.raises(ValueError, match="a sequence of 9 tokens does not fit a pack of 8"):
        first_fit_decreasing([3, 9], 8)


samples_strategy = st.lists(
    st.integers(1, 40).flatmap(lambda n: st.tuples(
        st.lists(st.integers(0, 255), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n))),
    min_size=1, max_size=30)


def make_samples(raw) -> list[Sample]:
    return [Sample(np.asarray(t, np.int64), np.asarray(t, np.int64)[::-1].copy() + 1000,
                   np.asarray(m, np.uint8)) for t, m in raw]


@given(samples_strategy, st.sampled_from([1, 2, 4, 8]), st.integers(5, 10), st.booleans())
def test_packs_keep_every_token_with_its_own_mask_and_sequence(raw, mult, size_in_mults,
                                                               pad_cu):
    samples = make_samples(raw)
    pack_size = max(size_in_mults * mult, -(-40 // mult) * mult)
    ds = PackedDataset(pack_samples(samples, pack_size, mult), PAD, pad_cu_seqlens=pad_cu)
    seen = {}
    for item in (ds[i] for i in range(len(ds))):
        assert all(len(item[k]) == pack_size for k in ("tokens", "labels", "loss_mask"))
        cu = item["cu_seqlens"][item["cu_seqlens"] >= 0]
        assert cu[0] == 0 and cu[-1] == pack_size and np.all(np.diff(cu) > 0)
        assert item["max_seqlen"] == np.diff(cu).max()
        if pad_cu:
            assert len(item["cu_seqlens"]) == ds.cu_seqlens_len
        for lo, hi in zip(cu[:-1], cu[1:]):
            ids = set(item["seq_ids"][lo:hi].tolist())
            assert len(ids) == 1  # a segment is one sequence (or the filler): never mixed
            assert list(item["position_ids"][lo:hi]) == list(range(hi - lo))
            assert (hi - lo) % mult == 0
            seq = ids.pop()
            if seq < 0:
                assert item["loss_mask"][lo:hi].sum() == 0
                continue
            n = len(samples[seq])
            assert seq not in seen
            seen[seq] = (item["tokens"][lo:lo + n], item["labels"][lo:lo + n],
                         item["loss_mask"][lo:lo + n])
            assert np.all(item["loss_mask"][lo + n:hi] == 0) and np.all(item["tokens"][lo + n:hi]
                                                                         == PAD)
    assert sorted(seen) == list(range(len(samples)))  # no sequence lost or duplicated
    for seq, (tokens, labels, mask) in seen.items():
        s = samples[seq]
        assert np.array_equal(tokens, s.tokens) and np.array_equal(labels, s.labels)
        assert np.array_equal(mask, s.loss_mask)
    batch = collate_packed([ds[i] for i in range(min(3, len(ds)))])
    for row, valid in enumerate(batch["cu_seqlens_argmin"].tolist()):
        assert batch["cu_seqlens"][row, valid - 1] == pack_size
        assert bool((batch["cu_seqlens"][row, valid:] == -1).all())


def test_pack_size_must_be_a_multiple_of_pad_seq_to_mult():
    with pytest.raises(DataError, match="multiple of pad_seq_to_mult 4"):
        pack_samples(make_samples([([1], [1])]), 10, 4)
    with pytest.raises(DataError, match="does not fit a pack of 4"):
        pack_samples(make_samples([([1] * 5, [1] * 5)]), 4, 1)


def ft_config(root, **fields):
    from mbridge_config import FinetuningDatasetConfig, PackedSequenceSpecs

    specs = PackedSequenceSpecs(**fields.pop("specs"))
    return FinetuningDatasetConfig(dataset_root=str(root), seq_length=32, do_test=False,
                                   packed_sequence_specs=specs, **fields)


def test_packed_finetuning_files_are_written_reused_and_rebuilt(tmp_path):
    from mbridge_data.corpus.instructions import write_instructions
    from mbridge_data.finetuning.builder import build_finetuning_datasets, packed_paths

    write_instructions(tmp_path, sizes={"training": 300, "validation": 40, "test": 10})
    tok = NullTokenizer()
    cfg = ft_config(tmp_path, specs=dict(packed_sequence_size=128, pad_seq_to_mult=2))
    train, valid, test = build_finetuning_datasets(cfg, tok)
    data, meta = packed_paths(cfg, tok, "train")
    assert data == tmp_path / "packed" / "NullTokenizer" / "training_128.npz" and data.is_file()
    info = json.loads(meta.read_text())
    assert info["num_sequences"] == 300 and info["num_packs"] == len(train)
    assert 0.8 < info["packing_efficiency"] <= 1.0
    assert train.split.efficiency == pytest.approx(info["packing_efficiency"], abs=1e-6)
    assert isinstance(test, type(None)) and len(valid) >= 1
    stamp = data.stat().st_mtime_ns
    build_finetuning_datasets(cfg, tok)
    assert data.stat().st_mtime_ns == stamp  # reused
    with open(tmp_path / "training.jsonl", "a") as f:
        f.write(json.dumps({"input": "What is 1 + 1?", "output": "2"}) + "\n")
    train, _, _ = build_finetuning_datasets(cfg, tok)
    assert json.loads(meta.read_text())["num_sequences"] == 301  # the source changed: rebuilt
    loader_batch = train.collate([train[0], train[1]])
    assert loader_batch["tokens"].shape == (2, 128)


def test_explicit_packed_paths(tmp_path):
    from mbridge_data.finetuning.builder import build_finetuning_datasets

    write_jsonl(tmp_path / "training.jsonl", [{"input": "ab", "output": "c"}] * 5)
    cfg = ft_config(tmp_path, do_validation=False, specs=dict(
        packed_sequence_size=16, packed_train_data_path=str(tmp_path / "p" / "t.npz"),
        packed_metadata_path=str(tmp_path / "p" / "meta.json")))
    train, _, _ = build_finetuning_datasets(cfg, NullTokenizer())
    assert (tmp_path / "p" / "t.npz").is_file() and (tmp_path / "p" / "meta.json").is_file()
    assert len(train) == 2  # five 4-token samples ("ab\\nc" + EOD, shifted), four per pack


def test_a_corrupt_packed_file_is_named(tmp_path):
    from mbridge_data.finetuning.builder import build_finetuning_datasets

    write_jsonl(tmp_path / "training.jsonl", [{"input": "ab", "output": "c"}])
    target = tmp_path / "t.npz"
    target.write_bytes(b"garbage")
    cfg = ft_config(tmp_path, do_validation=False, specs=dict(
        packed_sequence_size=16, packed_train_data_path=str(target)))
    with pytest.raises(DataError, match=f"{target}: not a readable packed-sequence file"):
        build_finetuning_datasets(cfg, NullTokenizer())
