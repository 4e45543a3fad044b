"""`megatron.bridge.models.conversion.auto_bridge`."""

from mbridge_train.auto_bridge import AutoBridge

__all__ = ["AutoBridge"]
