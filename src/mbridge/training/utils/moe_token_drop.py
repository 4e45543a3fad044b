"""`megatron.bridge.training.utils.moe_token_drop`."""

from mbridge_train.moe_token_drop import apply_moe_token_drop

__all__ = ["apply_moe_token_drop"]
