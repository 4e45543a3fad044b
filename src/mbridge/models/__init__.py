"""`megatron.bridge.models`: model providers (GPT, T5, Mamba) and the preset providers.

Names load on first use (building a provider imports megatron-core), so listing them is cheap.
"""

from __future__ import annotations

import importlib

_BASES = {
    "GPTModelProvider": "mbridge_models.gpt_provider",
    "T5ModelProvider": "mbridge_models.t5_provider",
    "MambaProvider": "mbridge_models.mamba_provider",
}


def __getattr__(name: str):
    if name in _BASES:
        value = getattr(importlib.import_module(_BASES[name]), name)
    else:
        presets = importlib.import_module("mbridge_models.presets")
        if not hasattr(presets, name):
            raise AttributeError(f"module 'mbridge.models' has no attribute {name!r}")
        value = getattr(presets, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    presets = importlib.import_module("mbridge_models.presets")
    return sorted(set(_BASES) | {n for n in dir(presets) if "Provider" in n})
