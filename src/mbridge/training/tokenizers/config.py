"""`megatron.bridge.training.tokenizers.config`: TokenizerConfig."""

from mbridge_config.training import TokenizerConfig

__all__ = ["TokenizerConfig"]
