"""Atomic file output: write under a temporary name, then ``os.replace`` into place.

A crash, a kill or an exception part-way leaves at most a ``.tmp-*`` file beside the target
(removed on exceptions), never a partial file under the final name. Several files that belong
together (``.bin`` + ``.idx``) are renamed only after all of them are complete. What a killed
writer left (``.NAME.tmp-<pid>-<hex>``) is removed by ``remove_stale_temps`` the next time the
same target is written, unless that process still runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path


def temp_name(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files of ``path`` that killed writers left (exactly ``temp_name``'s
    pattern, of a process that is gone); returns them."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.tmp-(\d+)-[0-9a-f]{{8}}$")
    removed = []
    if not path.parent.is_dir():
        return removed
    for entry in path.parent.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_file() and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own earlier, finished attempt
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
