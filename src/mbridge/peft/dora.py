"""`megatron.bridge.peft.dora`: the DoRA configuration."""

from mbridge_peft.dora import DoRA

__all__ = ["DoRA"]
