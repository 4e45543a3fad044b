"""`megatron.bridge.training`: pretrain / finetune and the training configs.

The entry points load on first use, so `import mbridge.training.config` stays free of the loop.
Once `mbridge.training.pretrain` (the Bridge module path) is imported, the attribute is that
module, which is callable like the function (`_entry_module`).
"""

from __future__ import annotations

import importlib

_EXPORTS = {"pretrain": "mbridge_train.entry_points", "finetune": "mbridge_train.entry_points"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mbridge.training' has no attribute {name!r}")
