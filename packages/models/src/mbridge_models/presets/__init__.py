"""Preset providers: the published architectures of each supported model family.

A preset is a provider dataclass whose defaults are one checkpoint's architecture (see each
module for the config.json it follows); create it and edit fields as with any provider:

    from mbridge_models.presets import Llama3ModelProvider8B
    model = Llama3ModelProvider8B(tensor_model_parallel_size=2)

``all_presets()`` lists the sized presets (one per published checkpoint) by class name.
"""

from __future__ import annotations

from mbridge_models.presets import deepseek, llama, mamba, nemotron, nemotron_h, qwen
from mbridge_models.presets.deepseek import (
    DeepSeekModelProvider, DeepseekV2LiteModelProvider, DeepseekV2ModelProvider,
    DeepseekV3ModelProvider, DeepSeekV2LiteModelProvider, DeepSeekV2ModelProvider,
    DeepSeekV3ModelProvider, MoonlightModelProvider16B)
from mbridge_models.presets.llama import (
    CodeLlamaModelProvider, CodeLlamaModelProvider7B, CodeLlamaModelProvider13B,
    CodeLlamaModelProvider34B, CodeLlamaModelProvider70B, Llama2ModelProvider,
    Llama2ModelProvider7B, Llama2ModelProvider13B, Llama2ModelProvider70B, Llama3ModelProvider,
    Llama3ModelProvider8B, Llama3ModelProvider70B, Llama4Experts16ModelProvider,
    Llama4Experts128ModelProvider, Llama4ModelProvider, Llama31ModelProvider,
    Llama31ModelProvider8B, Llama31ModelProvider70B, Llama31ModelProvider405B,
    Llama32ModelProvider, Llama32ModelProvider1B, Llama32ModelProvider3B, LlamaModelProvider)
from mbridge_models.presets.mamba import (
    MambaModelProvider1_3B, MambaModelProvider1P3B, MambaModelProvider2_7B,
    MambaModelProvider2P7B, MambaModelProvider130M, MambaModelProvider370M,
    MambaModelProvider780M, MambaProvider1_3B, MambaProvider2_7B, MambaProvider130M,
    MambaProvider370M, MambaProvider780M, NVIDIAMambaHybridModelProvider8B,
    NVIDIAMambaHybridProvider8B, NVIDIAMambaModelProvider8B, NVIDIAMambaProvider8B)
from mbridge_models.presets.nemotron import (
    Nemotron3ModelProvider4B, Nemotron3ModelProvider8B, Nemotron3ModelProvider22B,
    Nemotron4ModelProvider15B, Nemotron4ModelProvider340B, NemotronModelProvider)
from mbridge_models.presets.nemotron_h import (
    NemotronHModel8BProvider, NemotronHModel47BProvider,
    NemotronHModel56BProvider, NemotronHModelProvider, NemotronHModelProvider8B, NemotronHModelProvider47B, NemotronHModelProvider56B,
    NemotronNano9Bv2Provider, NemotronNano12Bv2Provider, NemotronNanoModelProvider9Bv2,
    NemotronNanoModelProvider12Bv2)
from mbridge_models.presets.qwen import (
    Qwen2ModelProvider, Qwen2ModelProvider1P5B, Qwen2ModelProvider7B, Qwen2ModelProvider72B,
    Qwen2ModelProvider500M, Qwen3ModelProvider, Qwen3ModelProvider1P7B, Qwen3ModelProvider4B,
    Qwen3ModelProvider8B, Qwen3ModelProvider14B, Qwen3ModelProvider32B, Qwen3ModelProvider600M,
    Qwen3MoEModelProvider, Qwen3MoEModelProvider30B_A3B, Qwen3MoEModelProvider235B_A22B,
    Qwen25ModelProvider, Qwen25ModelProvider1P5B, Qwen25ModelProvider3B, Qwen25ModelProvider7B,
    Qwen25ModelProvider14B, Qwen25ModelProvider32B, Qwen25ModelProvider72B,
    Qwen25ModelProvider500M, Qwen25VLModelProvider, Qwen25VLModelProvider3B,
    Qwen25VLModelProvider7B, Qwen25VLModelProvider32B, Qwen25VLModelProvider72B)

_SIZED = (
    Llama2ModelProvider7B, Llama2ModelProvider13B, Llama2ModelProvider70B,
    Llama3ModelProvider8B, Llama3ModelProvider70B,
    Llama31ModelProvider8B, Llama31ModelProvider70B, Llama31ModelProvider405B,
    Llama32ModelProvider1B, Llama32ModelProvider3B,
    CodeLlamaModelProvider7B, CodeLlamaModelProvider13B, CodeLlamaModelProvider34B,
    CodeLlamaModelProvider70B,
    Llama4Experts16ModelProvider, Llama4Experts128ModelProvider,
    Qwen2ModelProvider500M, Qwen2ModelProvider1P5B, Qwen2ModelProvider7B, Qwen2ModelProvider72B,
    Qwen25ModelProvider500M, Qwen25ModelProvider1P5B, Qwen25ModelProvider3B,
    Qwen25ModelProvider7B, Qwen25ModelProvider14B, Qwen25ModelProvider32B,
    Qwen25ModelProvider72B,
    Qwen3ModelProvider600M, Qwen3ModelProvider1P7B, Qwen3ModelProvider4B, Qwen3ModelProvider8B,
    Qwen3ModelProvider14B, Qwen3ModelProvider32B,
    Qwen3MoEModelProvider30B_A3B, Qwen3MoEModelProvider235B_A22B,
    Qwen25VLModelProvider3B, Qwen25VLModelProvider7B, Qwen25VLModelProvider32B,
    Qwen25VLModelProvider72B,
    DeepSeekV2ModelProvider, DeepSeekV2LiteModelProvider, DeepSeekV3ModelProvider,
    MoonlightModelProvider16B,
    Nemotron3ModelProvider4B, Nemotron3ModelProvider8B, Nemotron3ModelProvider22B,
    Nemotron4ModelProvider15B, Nemotron4ModelProvider340B,
    NemotronHModelProvider8B, NemotronHModelProvider47B,
    NemotronHModelProvider56B, NemotronNanoModelProvider9Bv2, NemotronNanoModelProvider12Bv2,
    MambaModelProvider130M, MambaModelProvider370M, MambaModelProvider780M,
    MambaModelProvider1P3B, MambaModelProvider2P7B, NVIDIAMambaModelProvider8B,
    NVIDIAMambaHybridModelProvider8B,
)


def all_presets() -> dict[str, type]:
    """Every sized preset (one published checkpoint each), by class name, in family order."""
    return {cls.__name__: cls for cls in _SIZED}


__all__ = ["all_presets"] + sorted(
    name for name, value in globals().items() if isinstance(value, type) and name[0] != "_")
