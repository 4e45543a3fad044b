"""`megatron.bridge.peft.lora`: the LoRA configuration."""

from mbridge_peft.lora import LoRA

__all__ = ["LoRA"]
