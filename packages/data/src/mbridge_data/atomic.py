"""Atomic file output: write under a temporary name, then ``os.replace`` into place.

A crash, a kill or an exception part-way leaves at most a ``.tmp-*`` file beside the target
(removed on exceptions), never a partial file under the final name. Several files that belong
together (``.bin`` + ``.idx``) are renamed only after all of them are complete.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


def temp_name(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths for ``paths``; on success move each into place, else remove them."""
    finals = [Path(p) for p in paths]
    for final in finals:
        final.parent.mkdir(parents=True, exist_ok=True)
    temps = [temp_name(p) for p in finals]
    try:
        yield temps
        for temp in temps:
            if temp.exists():
                with open(temp, "rb+") as f:
                    os.fsync(f.fileno())
        for temp, final in zip(temps, finals):
            os.replace(temp, final)
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_paths(path) as (temp,):
        temp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
