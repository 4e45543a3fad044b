"""mbridge: the Megatron-Bridge-compatible meta-package.

``from mbridge import AutoBridge`` loads on first use, so ``import mbridge`` (and the CLI's help)
stays free of torch and megatron-core.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "AutoBridge":
        from mbridge_train.auto_bridge import AutoBridge

        return AutoBridge
    raise AttributeError(f"module 'mbridge' has no attribute {name!r}")
