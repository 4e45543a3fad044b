"""jsonl / plain text -> megatron-core indexed dataset (``PREFIX.bin`` + ``PREFIX.idx``).

Why it is fast: the input is cut into byte ranges that worker processes tokenize independently,
each with one batched call into the Rust tokenizer per range (no per-document Python loop beyond
JSON parsing), and each range comes back as one NumPy array that is written in one call. The
parent only writes, in input order, so the output is the same for any number of workers.

Documents: one per jsonl line (``json_key``, default "text") or per non-blank line of a text
file; empty texts are skipped; EOD is appended to each document unless ``append_eod=False``.
Both files are written under temporary names and renamed only when complete; temp files a
killed earlier run left for the same prefix are removed first.
"""

from __future__ import annotations

import functools
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from mbridge_data.atomic import atomic_paths, remove_stale_temps
from mbridge_data.errors import DataError, at_line
from mbridge_data.indexed import bin_path, idx_path, index_bytes, token_dtype
from mbridge_data.jsonl import byte_ranges, line_number, read_range
from mbridge_data.tokenizers.base import Tokenizer

DEFAULT_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class PreprocessResult:
    prefix: str
    documents: int
    tokens: int
    input_bytes: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("inf")


def input_format(path: str | Path) -> str:
    suffixes = Path(path).suffixes
    return "jsonl" if suffixes and suffixes[-1] in (".jsonl", ".json", ".ndjson") else "text"


# ------------------------------------------------------------------------------------ worker side

_STATE: dict = {}


def _init_worker(tokenizer: Tokenizer, json_key: str, append_eod: bool, dtype, *,
                 forked: bool = False) -> None:
    if forked:
        # A forked child inherits the parent's Rayon thread-pool registry but none of its
        # threads: a batched encode handed to that pool can wait forever (seen once while
        # building the corpus, right after BPE training had used the pool). Parallelism here
        # comes from the worker processes; each encodes on its own thread.
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _STATE.update(tokenizer=tokenizer, json_key=json_key, append_eod=append_eod, dtype=dtype)


def _texts(path: str, fmt: str, first: int, data: bytes, key: str) -> list[str]:
    lines = data.split(b"\n")
    if fmt == "text":
        return [t for t in (line.decode("utf-8", errors="replace").strip() for line in lines) if t]
    try:
        texts = [json.loads(line)[key] for line in lines if line.strip()]
    except (ValueError, KeyError, TypeError, IndexError):
        texts = None
    if texts is None or not all(type(t) is str for t in texts):
        _raise_first_bad_line(path, first, lines, key)
    return [t for t in texts if t]


def _raise_first_bad_line(path: str, first: int, lines: list[bytes], key: str) -> None:
    offset = first
    for line in lines:
        if line.strip():
            problem = None
            try:
                record = json.loads(line)
            except ValueError as error:
                problem = f"not valid JSON ({getattr(error, 'msg', error)})"
            else:
                if not isinstance(record, dict):
                    problem = f"expected a JSON object, got {type(record).__name__}"
                elif key not in record:
                    problem = f"no key {key!r} (keys: {', '.join(sorted(record)) or 'none'})"
                elif not isinstance(record[key], str):
                    problem = f"{key!r} is {type(record[key]).__name__}, expected a string"
            if problem:
                raise at_line(path, line_number(path, offset), problem)
        offset += len(line) + 1
    raise DataError(f"{path}: unreadable records after byte {first}")  # not reached


def encode_range(task: tuple[str, str, int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """(tokens, per-document token counts, bytes covered) for one byte range of one file."""
    path, fmt, start, end = task
    tokenizer, dtype = _STATE["tokenizer"], _STATE["dtype"]
    first, data = read_range(path, start, end)
    texts = _texts(path, fmt, first, data, _STATE["json_key"])
    ids = tokenizer.tokenize_batch(texts) if texts else []
    lengths = np.fromiter(map(len, ids), dtype=np.int32, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    if _STATE["append_eod"] and len(ids):
        lengths += 1
        out = np.empty(int(lengths.sum()), dtype=dtype)
        eod_at = np.cumsum(lengths, dtype=np.int64) - 1
        keep = np.ones(len(out), dtype=bool)
        keep[eod_at] = False
        out[eod_at] = tokenizer.eod
        out[keep] = flat
        flat = out
    return flat, lengths, end - start


# ------------------------------------------------------------------------------------ parent side


def preprocess(
    inputs: str | Path | list[str | Path],
    output_prefix: str | Path,
    tokenizer: Tokenizer,
    *,
    json_key: str = "text",
    workers: int | None = None,
    append_eod: bool = True,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool | None = None,
) -> PreprocessResult:
    """Tokenize ``inputs`` (jsonl or text files, concatenated in order) into OUTPUT_PREFIX.bin/.idx.

    ``workers``: processes (default: one per CPU; 1 runs in this process). ``progress``: a tqdm bar
    on stderr (default: when stderr is a terminal).
    """
    started = time.perf_counter()
    paths = [Path(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: input file not found")
    dtype = token_dtype(tokenizer.vocab_size)
    tasks = [(str(p), input_format(p), s, e) for p in paths for s, e in byte_ranges(p, chunk_bytes)]
    total = sum(p.stat().st_size for p in paths)
    workers = len(os.sched_getaffinity(0)) if workers is None else max(1, int(workers))
    workers = min(workers, max(1, len(tasks)))
    bar = _progress_bar(total, progress)
    documents = tokens = 0
    lengths: list[np.ndarray] = []
    prefix = Path(output_prefix)
    for final in (bin_path(prefix), idx_path(prefix)):
        remove_stale_temps(final)  # what a killed earlier run left
    with atomic_paths(bin_path(prefix), idx_path(prefix)) as (tmp_bin, tmp_idx):
        with open(tmp_bin, "wb") as out:
            for flat, lens, covered in _encoded(tasks, workers, tokenizer, json_key, append_eod,
                                                dtype):
                out.write(memoryview(flat))
                lengths.append(lens)
                documents += len(lens)
                tokens += len(flat)
                bar.update(covered)
        tmp_idx.write_bytes(index_bytes(np.concatenate(lengths) if lengths else
                                        np.zeros(0, np.int32), dtype))
    bar.close()
    return PreprocessResult(str(prefix), documents, tokens, total, time.perf_counter() - started)


def _encoded(tasks, workers, tokenizer, json_key, append_eod, dtype):
    if workers == 1:
        _init_worker(tokenizer, json_key, append_eod, dtype)
        yield from map(encode_range, tasks)
        return
    # fork: no re-import of the caller's __main__ (spawn would need an `if __name__` guard in
    # every user script). Workers touch only NumPy and the tokenizer, never torch.
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=functools.partial(_init_worker, forked=True),
                  initargs=(tokenizer, json_key, append_eod, dtype)) as pool:
        yield from pool.imap(encode_range, tasks)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, progress: bool | None):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, desc="preprocess",
                mininterval=0.5)
