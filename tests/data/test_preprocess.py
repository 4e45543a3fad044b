"""Preprocessing: megatron-core reads exactly what direct tokenization gives; bad input is named
by file:line; an interrupted run leaves nothing under the final names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_jsonl
from mbridge_data.errors import DataError
from mbridge_data.preprocess import preprocess
from mbridge_data.tokenizers.null import NullTokenizer

DOCS = ["First document.\nWith two lines.", "", "Second — with ünïcode 🙂",
        "x" * 5000, "short"]


def read_back(prefix):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(prefix))
    return [ds[i].tolist() for i in range(len(ds))], ds


@pytest.mark.parametrize("workers", [1, 2])
def test_megatron_reads_exactly_the_tokenized_documents(corpus_tokenizer, tmp_path, workers):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": d, "id": i} for i, d in enumerate(DOCS)])
    result = preprocess(path, tmp_path / "out", corpus_tokenizer, workers=workers,
                        chunk_bytes=64, progress=False)  # tiny chunks: many ranges, one per doc
    docs, ds = read_back(tmp_path / "out")
    expected = [corpus_tokenizer.tokenize(d) + [corpus_tokenizer.eod] for d in DOCS if d]
    assert docs == expected
    assert ds.index.dtype == np.uint16 and list(ds.document_indices) == list(range(5))
    assert (result.documents, result.tokens) == (4, sum(map(len, expected)))


def test_output_does_not_depend_on_workers_or_chunking(corpus, corpus_tokenizer, tmp_path):
    source = Path(corpus.root) / "corpus.jsonl"
    preprocess(source, tmp_path / "a", corpus_tokenizer, workers=2, chunk_bytes=100_000)
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"a{suffix}").read_bytes() == \
               (Path(corpus.prefix + suffix)).read_bytes()


def test_text_files_are_one_document_per_line_and_eod_is_optional(tmp_path):
    (tmp_path / "in.txt").write_text("abc\n\n  \ndé\n")
    preprocess(tmp_path / "in.txt", tmp_path / "out", NullTokenizer(), append_eod=False,
               workers=1)
    docs, ds = read_back(tmp_path / "out")
    assert docs == [list(b"abc"), list("dé".encode())]


def test_several_inputs_and_a_custom_json_key(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"body": "one"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"body": "two"}, {"body": "three"}])
    preprocess([a, b], tmp_path / "out", NullTokenizer(), json_key="body", workers=2)
    docs, _ = read_back(tmp_path / "out")
    assert [bytes(d[:-1]).decode() for d in docs] == ["one", "two", "three"]
    assert all(d[-1] == 256 for d in docs)


def test_gpt_dataset_builds_on_the_output(corpus, corpus_tokenizer):
    """megatron-core 0.19's builder works without torch.distributed being initialised."""
    import torch

    from mbridge_config import GPTDatasetConfig
    from mbridge_data.pretraining import build_pretraining_datasets

    assert not torch.distributed.is_initialized()
    cfg = GPTDatasetConfig(sequence_length=64, blend=[corpus.prefix], split="90,5,5",
                           reset_position_ids=False, reset_attention_mask=False,
                           eod_mask_loss=False)
    train, valid, test = build_pretraining_datasets(cfg, corpus_tokenizer, [100, 10, 10])
    sample = train[0]
    assert sample["tokens"].shape == (64,) and torch.equal(sample["tokens"][1:],
                                                           sample["labels"][:-1])
    assert len(train) >= 100 and len(valid) >= 10 and len(test) >= 10


@pytest.mark.parametrize("line, message", [
    ('{"text": "ok"', "not valid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"body": "no text key"}', "no key 'text'"),
    ('{"text": 5}', "'text' is int, expected a string"),
])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_line_is_named_by_file_and_line_and_nothing_is_written(tmp_path, line, message,
                                                                     workers):
    records = [{"text": f"document {i}"} for i in range(300)]
    records.insert(257, line)
    path = write_jsonl(tmp_path / "in.jsonl", records)
    with pytest.raises(DataError) as info:
        preprocess(path, tmp_path / "out" / "ds", NullTokenizer(), workers=workers,
                   chunk_bytes=512)  # the bad line is met after several ranges were written
    assert str(info.value).startswith(f"{path}:258: {message}")
    assert "\n" not in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []  # no final files, no temporary leftovers


def test_missing_input_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: input file not found"):
        preprocess(tmp_path / "nope.jsonl", tmp_path / "out", NullTokenizer())


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "mbridge.cli", "data", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_killed_run_leaves_nothing_under_the_final_names(tmp_path):
    line = json.dumps({"text": "lorem ipsum dolor sit amet " * 40}) + "\n"
    (tmp_path / "big.jsonl").write_text(line * 60_000)  # ~65 MB: seconds of work
    proc = _cli("preprocess", "-i", str(tmp_path / "big.jsonl"), "-o", str(tmp_path / "ds"),
                "--tokenizer-type", "NullTokenizer", "--workers", "1", "--no-progress")
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".ds.bin.tmp-*")):  # the run has started writing
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "ds.bin").exists() and not (tmp_path / "ds.idx").exists()
    # The next run to the same prefix removes what the killed one left.
    preprocess(write_jsonl(tmp_path / "small.jsonl", [{"text": "abc"}]), tmp_path / "ds",
               NullTokenizer(), workers=1)
    assert sorted(p.name for p in tmp_path.glob(".ds.*")) == []


def test_only_our_temp_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = [f".ds.bin.tmp-{dead}-0123abcd", f".ds.idx.tmp-{dead}-deadbeef"]
    kept = [f".ds.bin.tmp-{os.getppid()}-0123abcd",  # a writer that still runs
            ".ds.bin.tmp-notours", f".other.bin.tmp-{dead}-0123abcd", "ds.bin.tmp", "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    preprocess(write_jsonl(tmp_path / "in.jsonl", [{"text": "abc"}]), tmp_path / "ds",
               NullTokenizer(), workers=1)
    left = {p.name for p in tmp_path.iterdir()}
    assert not left & set(stale) and set(kept) <= left


def test_cli_preprocess_without_torch(tmp_path, small_hf_dir):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "the lazy dog"}] * 3)
    script = ("import sys\nfrom mbridge.cli import main\n"
              f"code = main(['data', 'preprocess', '-i', {path!r}, '-o', {str(tmp_path / 'o')!r},"
              f" '--tokenizer-model', {str(small_hf_dir)!r}, '--workers', '2'])\n"
              "heavy = [m for m in ('torch', 'megatron', 'mbridge_config') if m in sys.modules]\n"
              "assert not heavy, heavy\nsys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "3 documents" in done.stdout and (tmp_path / "o.idx").is_file()
    bad = subprocess.run([sys.executable, "-m", "mbridge.cli", "data", "preprocess", "-i", path,
                          "-o", str(tmp_path / "p"), "--tokenizer-model", "/no/such/dir"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "/no/such/dir is not a local directory" in bad.stderr
