"""megatron-core's indexed dataset files (``PREFIX.bin`` tokens + ``PREFIX.idx`` index).

Written here in bulk from NumPy arrays (megatron-core's IndexedDatasetBuilder appends one Python
list per document, the slow part of preprocessing), in exactly the layout its IndexedDataset
reads: header ``MMIDIDX\\0\\0``, version 1, dtype code, sequence and document counts, then the
int32 lengths, int64 byte pointers and int64 document indices. ``check_indexed_pair`` turns a
missing or truncated pair into one clear error before megatron-core trips over it;
``check_token_ids`` refuses token ids the model's embedding has no row for (an IndexError on the
CPU, a device-side assert on a GPU, at whatever step first draws that document).

``identity`` (size and mtime_ns of both files) is what caches of anything derived from a pair
are keyed by: a pair preprocessed again to the same prefix is a different dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from mbridge_data.errors import DataError

HEADER = b"MMIDIDX\x00\x00"
VERSION = 1
# megatron.core.datasets.indexed_dataset.DType codes.
DTYPE_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float64: 6,
               np.float32: 7, np.uint16: 8}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}
_FIXED = len(HEADER) + 8 + 1 + 8 + 8  # header, version, dtype code, two counts


def token_dtype(vocab_size: int) -> type:
    """The narrowest token dtype (megatron-core's choice: uint16 below 65500 entries)."""
    return np.uint16 if vocab_size < 65500 else np.int32


def index_bytes(lengths: np.ndarray, dtype: type) -> bytes:
    """The whole .idx file for one sequence per document with these token counts."""
    lengths = np.asarray(lengths, dtype=np.int32)
    n = len(lengths)
    itemsize = np.dtype(dtype).itemsize
    pointers = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], dtype=np.int64, out=pointers[1:])
    pointers *= itemsize
    documents = np.arange(n + 1, dtype=np.int64)
    head = HEADER + struct.pack("<Q", VERSION) + struct.pack("<B", DTYPE_CODES[dtype])
    head += struct.pack("<Q", n) + struct.pack("<Q", n + 1)
    return b"".join((head, lengths.tobytes(), pointers.tobytes(), documents.tobytes()))


def bin_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.bin")


def idx_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.idx")


def check_indexed_pair(prefix: str | Path) -> tuple[int, int]:
    """Raise DataError unless PREFIX.idx and PREFIX.bin exist and agree; return (sequences,
    documents). Catches files cut short by a crash or an incomplete copy."""
    idx, binf = idx_path(prefix), bin_path(prefix)
    missing = [str(p) for p in (idx, binf) if not p.is_file()]
    if missing:
        raise DataError(f"{' and '.join(missing)}: not found (dataset prefix {prefix})")
    idx_size = idx.stat().st_size
    with open(idx, "rb") as f:
        head = f.read(_FIXED)
    if len(head) < _FIXED or head[: len(HEADER)] != HEADER:
        raise DataError(f"{idx}: not a megatron-core index file (bad or truncated header)")
    (version,) = struct.unpack_from("<Q", head, len(HEADER))
    code = head[len(HEADER) + 8]
    n, d = struct.unpack_from("<QQ", head, len(HEADER) + 9)
    if version != VERSION or code not in CODE_DTYPES:
        raise DataError(f"{idx}: unsupported index version {version} or dtype code {code}")
    expected = _FIXED + n * 4 + n * 8 + d * 8
    if idx_size not in (expected, expected + n):  # + n: the optional int8 mode per sequence
        raise DataError(f"{idx}: truncated or corrupt: {idx_size} bytes, the header promises "
                        f"{expected} ({n} sequences, {d} document indices)")
    itemsize = np.dtype(CODE_DTYPES[code]).itemsize
    if n:
        raw = np.memmap(idx, dtype=np.uint8, mode="r")
        lengths = np.frombuffer(raw, dtype=np.int32, count=n, offset=_FIXED)
        pointers = np.frombuffer(raw, dtype=np.int64, count=n, offset=_FIXED + 4 * n)
        needed = int(pointers[-1]) + int(lengths[-1]) * itemsize
        del lengths, pointers, raw
    else:
        needed = 0
    bin_size = binf.stat().st_size
    if bin_size != needed:
        raise DataError(f"{binf}: {'truncated' if bin_size < needed else 'too long'}: "
                        f"{bin_size} bytes, its index {idx} needs {needed}")
    return n, d


def identity(prefix: str | Path) -> tuple[int, int, int, int]:
    """(size, mtime_ns) of PREFIX.bin and of PREFIX.idx: changes when the pair is rewritten."""
    b, i = bin_path(prefix).stat(), idx_path(prefix).stat()
    return b.st_size, b.st_mtime_ns, i.st_size, i.st_mtime_ns


def identity_digest(prefixes) -> str:
    """16 hex digits naming these pairs as they are on disk now (order matters)."""
    h = hashlib.blake2b(digest_size=8)
    for prefix in prefixes:
        h.update(f"{Path(prefix).resolve()}|{identity(prefix)}\n".encode())
    return h.hexdigest()


_MAX_IDS: dict[tuple, int] = {}
_MEMO_FILE = "token_ids.json"
_CHUNK = 64 << 20


def max_token_id(prefix: str | Path, memo_dir: str | Path | None = None) -> int:
    """The largest token id in PREFIX.bin (-1 when empty), read through a memory map in
    chunks. Remembered per file identity, in this process and, given ``memo_dir``, in a small
    JSON there (the cache folder), so a large corpus is scanned once."""
    check_indexed_pair(prefix)
    key = (str(Path(prefix).resolve()), identity(prefix))
    if key in _MAX_IDS:
        return _MAX_IDS[key]
    memo = Path(memo_dir) / _MEMO_FILE if memo_dir is not None else None
    saved = _read_memo(memo)
    entry = saved.get(key[0])
    if entry is not None and tuple(entry[0]) == key[1]:
        _MAX_IDS[key] = int(entry[1])
        return _MAX_IDS[key]
    with open(idx_path(prefix), "rb") as f:
        code = f.read(_FIXED)[len(HEADER) + 8]
    dtype = np.dtype(CODE_DTYPES[code])
    largest = -1
    if bin_path(prefix).stat().st_size:
        tokens = np.memmap(bin_path(prefix), dtype=dtype, mode="r")
        step = _CHUNK // dtype.itemsize
        for start in range(0, len(tokens), step):
            largest = max(largest, int(tokens[start:start + step].max()))
        del tokens
    _MAX_IDS[key] = largest
    if memo is not None:
        saved[key[0]] = [list(key[1]), largest]
        _write_memo(memo, saved)
    return largest


def check_token_ids(prefix: str | Path, vocab_size: int, memo_dir: str | Path | None = None,
                    field: str = "model.vocab_size") -> None:
    """DataError naming PREFIX.bin and its largest id when an id is >= ``vocab_size``."""
    largest = max_token_id(prefix, memo_dir)
    if largest >= vocab_size:
        raise DataError(f"{bin_path(prefix)}: token id {largest} is out of the model's "
                        f"vocabulary ({field}={vocab_size}); preprocess it with the tokenizer "
                        "of this model")


def _read_memo(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_memo(path: Path, data: dict) -> None:
    from mbridge_data.atomic import write_text_atomic

    try:
        write_text_atomic(path, json.dumps(data))
    except OSError:  # a read-only cache folder: scan again next time
        pass
