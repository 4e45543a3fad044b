"""`megatron.bridge.training.pretrain`."""

from mbridge_train.pretrain import pretrain

__all__ = ["pretrain"]
