"""LoRA and DoRA adapters for megatron-core models."""

from mbridge_peft.base import PEFT, set_trainable, trainable_parameters, wrappers
from mbridge_peft.dora import DoRA, reset_magnitudes
from mbridge_peft.hf_export import export_hf_peft
from mbridge_peft.lora import LoRA, PEFTConfigError
from mbridge_peft.matching import TargetError
from mbridge_peft.merging import merge, unmerge
from mbridge_peft.state import (adapter_state_dict, full_adapter_state_dict, load_adapters,
                                save_adapters)
from mbridge_peft.wrappers import DoRALinear, LoRALinear, MergeError

__version__ = "0.1.0"

__all__ = [
    "PEFT", "LoRA", "DoRA", "LoRALinear", "DoRALinear", "TargetError", "PEFTConfigError",
    "MergeError", "trainable_parameters", "set_trainable", "wrappers", "merge", "unmerge",
    "adapter_state_dict", "full_adapter_state_dict", "save_adapters", "load_adapters",
    "export_hf_peft", "reset_magnitudes",
]
