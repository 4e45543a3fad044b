"""The one way mbridge-train replaces a small file in a checkpoint folder (tracker, checksum
manifest, loss curve and its record): a temp file beside it (``.<name>.<random><suffix>``, the
pattern ``checkpointing.remove_leftovers`` knows), flushed to disk, then renamed over it. A
reader sees the old file or the new one, never half of one; a kill leaves at most the temp."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def replace_bytes(path: str, data: bytes, *, suffix: str = "") -> None:
    replace_file(path, lambda f: f.write(data), suffix=suffix)


def replace_file(path: str, write: Callable[[BinaryIO], object], *, suffix: str = "") -> None:
    """``write(handle)`` into the temp file (it may stream: a reader still sees the old file),
    then the rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would follow the rename
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
