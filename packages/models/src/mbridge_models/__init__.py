"""Model providers, presets, fast layer specs and the CPU runtime for megatron-core.

Providers load on first use. mbridge_config is imported first, whatever module of this package
is asked for: its import filters megatron-core's warnings that never apply to an mbridge run
(``mbridge_config.quiet``) before megatron-core is imported and emits them.
"""

from __future__ import annotations

import importlib

import mbridge_config  # noqa: F401  (before megatron-core: see above)

__version__ = "0.1.0"

_EXPORTS = {
    "GPTModelProvider": "mbridge_models.gpt_provider",
    "T5ModelProvider": "mbridge_models.t5_provider",
    "MambaProvider": "mbridge_models.mamba_provider",
    "count_parameters": "mbridge_models.counting",
    "flops_per_token": "mbridge_models.counting",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mbridge_models' has no attribute {name!r}")
