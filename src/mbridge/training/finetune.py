"""`megatron.bridge.training.finetune`."""

from mbridge_train.finetune import finetune

__all__ = ["finetune"]
