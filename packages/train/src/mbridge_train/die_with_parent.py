"""The initializer of the helper processes a run starts (the async-save results Manager): they
end when the training process ends, even by SIGKILL (Linux), so a killed run leaves no server
behind for every restart to add to.

A module of its own that imports nothing heavy: a spawned helper imports its initializer's
module, and ``async_saves`` (torch) made the Manager take 19-35 s to come up instead of 0.2 s.
"""

from __future__ import annotations

import ctypes
import signal


def die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
