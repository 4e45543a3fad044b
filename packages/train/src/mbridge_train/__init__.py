"""Pretrain / finetune loop, losses, checkpoints, logging and recipes of mbridge.

``pretrain`` and ``finetune`` load on first use, so importing the package stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "pretrain": "mbridge_train.entry_points",
    "finetune": "mbridge_train.entry_points",
    "GlobalState": "mbridge_train.state",
    "TrainState": "mbridge_train.state",
    "masked_token_loss": "mbridge_train.losses",
    "forward_step": "mbridge_train.gpt_step",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mbridge_train' has no attribute {name!r}")
