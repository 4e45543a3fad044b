"""`megatron.bridge.training.gpt_step`: the stock GPT forward step."""

from mbridge_train.gpt_step import forward_step, get_batch

__all__ = ["forward_step", "get_batch"]
