"""`megatron.bridge.training.state`."""

from mbridge_train.state import GlobalState, TrainState

__all__ = ["GlobalState", "TrainState"]
