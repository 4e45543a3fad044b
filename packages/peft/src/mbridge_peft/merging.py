"""Fold adapters into the base weights for inference, and take them out again."""

from __future__ import annotations

from typing import Any

from mbridge_peft.base import wrappers


def merge(model: Any) -> Any:
    """Merge every adapter into its base weight (float32 arithmetic, one cast back). The
    originals are kept so ``unmerge`` restores them exactly. Collective for row-parallel DoRA
    (its norms are all-reduced): call on every TP rank."""
    for _, wrapper in wrappers(model):
        wrapper.merge()
    return model


def unmerge(model: Any) -> Any:
    """Restore the exact pre-merge base weights; adapters apply again in the forward."""
    for _, wrapper in wrappers(model):
        wrapper.unmerge()
    return model
