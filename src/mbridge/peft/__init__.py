"""`megatron.bridge.peft`: LoRA and DoRA, served by mbridge-peft."""

from mbridge_peft import (PEFT, DoRA, LoRA, export_hf_peft, load_adapters, merge,
                          save_adapters, trainable_parameters, unmerge)

__all__ = ["PEFT", "LoRA", "DoRA", "trainable_parameters", "merge", "unmerge", "save_adapters",
           "load_adapters", "export_hf_peft"]
