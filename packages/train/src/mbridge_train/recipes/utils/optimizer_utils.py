"""``megatron.bridge.recipes.utils.optimizer_utils``: the optimizer + schedule pair recipes use."""

from mbridge_train.optim import distributed_fused_adam_with_cosine_annealing

__all__ = ["distributed_fused_adam_with_cosine_annealing"]
