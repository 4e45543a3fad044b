"""Reading JSON-lines files: every bad line is reported as ``file:line`` with what was wrong.

Also the byte-range split used by parallel preprocessing: a range owns every line that *starts*
inside it, so ranges can be cut anywhere and still cover each line exactly once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from mbridge_data.errors import DataError, at_line


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line; records must be JSON objects."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found")
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            yield number, parse_line(line, path, number)


def parse_line(line: bytes | str, path: str | Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        reason = getattr(error, "msg", None) or str(error)
        raise at_line(str(path), number, f"not valid JSON ({reason})") from None
    if not isinstance(record, dict):
        raise at_line(str(path), number, f"expected a JSON object, got {type(record).__name__}")
    return record


def line_number(path: str | Path, offset: int) -> int:
    """1-based number of the line holding byte ``offset`` (only computed on the error path)."""
    count, done = 1, 0
    with open(path, "rb") as f:
        while done < offset:
            block = f.read(min(1 << 20, offset - done))
            if not block:
                break
            count += block.count(b"\n")
            done += len(block)
    return count


def byte_ranges(path: str | Path, chunk_bytes: int) -> list[tuple[int, int]]:
    size = os.path.getsize(path)
    return [(start, min(start + chunk_bytes, size)) for start in range(0, size, chunk_bytes)]


def read_range(path: str | Path, start: int, end: int) -> tuple[int, bytes]:
    """(offset of the first owned line, the owned lines' bytes) for the range [start, end)."""
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # the line in progress belongs to the previous range
        first = f.tell()
        if first >= end:
            return first, b""
        data = f.read(end - first)
        if not data.endswith(b"\n"):
            data += f.readline()
    return first, data
