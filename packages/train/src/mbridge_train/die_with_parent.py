"""Helper processes a run starts (the async-save results Manager, the writers of async saves)
end when the training process ends, even by SIGKILL (Linux): a killed run leaves no server
behind for every restart to add to, and no writer still filling a checkpoint folder that the
restart cleans up or saves into again.

A module of its own that imports nothing heavy: a spawned helper imports its initializer's
module, and ``async_saves`` (torch) made the Manager take 19-35 s to come up instead of 0.2 s.
"""

from __future__ import annotations

import ctypes
import os
import signal


def die_with_parent(parent: int | None = None) -> None:
    """``parent``: the pid this process was started by; if it is already gone (it died before
    the signal was armed), end now."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)
