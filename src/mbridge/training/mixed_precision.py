"""`megatron.bridge.training.mixed_precision`: MixedPrecisionConfig and the named recipes."""

from mbridge_config.mixed_precision import *  # noqa: F403
from mbridge_config.mixed_precision import PRESETS, MixedPrecisionConfig, get_mixed_precision_config

__all__ = ["MixedPrecisionConfig", "get_mixed_precision_config", *PRESETS]
