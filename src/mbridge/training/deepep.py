"""`megatron.bridge.training.deepep`."""

from mbridge_train.deepep import apply_deepep, validate_deepep

__all__ = ["apply_deepep", "validate_deepep"]
