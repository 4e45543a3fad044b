"""How an error mbridge raises on purpose reaches the console: one line, never a traceback.

One of ``USER_ERRORS`` (ConfigError, DataError, CheckpointError, ConversionError, ...) names
the field or file and what was expected; the stack below it says nothing a user can act on.
``pretrain``/``finetune`` install an excepthook that prints such an error, when nothing catches
it, as ``[rankR]: mbridge: CheckpointError: <message>`` (the rank only in a multi-process run)
and exits with status 1; every other exception keeps its traceback. ``MBRIDGE_TRACEBACK=1``
shows tracebacks for ours too.
"""

from __future__ import annotations

import os
import sys

from mbridge_config.errors import MBridgeError
from mbridge_data.errors import DataError

USER_ERRORS = (MBridgeError, DataError)
"""What mbridge raises on purpose (DataError stands apart: see mbridge_data.errors)."""


def one_line(error: BaseException, *, rank_prefix: bool = True) -> str:
    """The error as one console line: its type and message, newlines joined with '; ', after
    ``[rankN]: `` in a multi-process run (torch's own excepthook prefix)."""
    message = str(error).strip().replace("\n", "; ")
    prefix = _rank_prefix() if rank_prefix else ""
    return f"{prefix}mbridge: {type(error).__name__}: {message}"


def install_excepthook() -> None:
    """Render uncaught USER_ERRORS as one line (idempotent; other exceptions untouched)."""
    if getattr(sys.excepthook, "_mbridge", False):
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if isinstance(value, USER_ERRORS) and not os.environ.get("MBRIDGE_TRACEBACK"):
            # Once torch.distributed starts it wraps this hook and prefixes the rank itself.
            print(one_line(value, rank_prefix=sys.excepthook is hook), file=sys.stderr,
                  flush=True)
            return
        previous(kind, value, tb)

    hook._mbridge = True
    sys.excepthook = hook


def _rank_prefix() -> str:
    try:
        from mbridge_config.launch import detect

        launch = detect()
    except MBridgeError:  # a malformed launcher variable: no rank to name
        return ""
    return f"[rank{launch.rank}]: " if launch.world_size > 1 else ""
