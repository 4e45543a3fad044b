"""`megatron.bridge.training.losses`."""

from mbridge_train.losses import masked_token_loss

__all__ = ["masked_token_loss"]
