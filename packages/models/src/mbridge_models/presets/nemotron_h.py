"""Nemotron-H and Nemotron Nano v2 presets: hybrid Mamba-2 / attention / squared-ReLU MLP stacks.

Sources: nvidia/Nemotron-H-{8B,47B,56B}-Base-8K and nvidia/NVIDIA-Nemotron-Nano-{9B,12B}-v2
config.json (hidden_size, num_hidden_layers, hybrid_override_pattern, mamba_num_heads,
mamba_head_dim, ssm_state_size, n_groups 8, intermediate_size, num_attention_heads,
num_key_value_heads 8, head_dim 128, vocab_size 131072, relu2 MLP, untied output layer, no
position embedding). Layer pattern characters: M Mamba-2, * attention, - MLP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mbridge_models.mamba_provider import MambaProvider
from mbridge_models.presets.nemotron import squared_relu


@dataclass
class NemotronHModelProvider(MambaProvider):
    normalization: str = "RMSNorm"
    layernorm_epsilon: float = 1e-5
    activation_func: Callable = squared_relu
    gated_linear_unit: bool = False
    add_bias_linear: bool = False
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    num_query_groups: int | None = 8
    kv_channels: int | None = 128
    mamba_num_groups: int = 8
    mamba_head_dim: int = 64
    mamba_state_dim: int = 128
    vocab_size: int | None = field(default=131072, kw_only=True)
    seq_length: int = field(default=8192, kw_only=True)


@dataclass
class NemotronHModelProvider8B(NemotronHModelProvider):
    num_layers: int = 52
    hidden_size: int = 4096
    ffn_hidden_size: int | None = 21504
    num_attention_heads: int = 32
    mamba_num_heads: int | None = 128
    hybrid_override_pattern: str | None = field(
        default="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-", kw_only=True)
    hf_model_id: str | None = field(default="nvidia/Nemotron-H-8B-Base-8K", kw_only=True)


@dataclass
class NemotronHModelProvider47B(NemotronHModelProvider):
    num_layers: int = 98
    hidden_size: int = 8192
    ffn_hidden_size: int | None = 30720
    num_attention_heads: int = 64
    mamba_num_heads: int | None = 256
    mamba_state_dim: int = 256
    hybrid_override_pattern: str | None = field(
        default="M-M-M-M-M-M-M-M-M*-M-M-M-M-M-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-M-M---"
                "MM---M-M*-M-M-M-M-M-", kw_only=True)
    hf_model_id: str | None = field(default="nvidia/Nemotron-H-47B-Base-8K", kw_only=True)


@dataclass
class NemotronHModelProvider56B(NemotronHModelProvider):
    num_layers: int = 118
    hidden_size: int = 8192
    ffn_hidden_size: int | None = 32768
    num_attention_heads: int = 64
    mamba_num_heads: int | None = 256
    mamba_state_dim: int = 256
    hybrid_override_pattern: str | None = field(
        default="M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-"
                "M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-", kw_only=True)
    hf_model_id: str | None = field(default="nvidia/Nemotron-H-56B-Base-8K", kw_only=True)


@dataclass
class NemotronNanoModelProvider9Bv2(NemotronHModelProvider):
    num_layers: int = 56
    hidden_size: int = 4480
    ffn_hidden_size: int | None = 15680
    num_attention_heads: int = 40
    mamba_num_heads: int | None = 128
    mamba_head_dim: int = 80
    hybrid_override_pattern: str | None = field(
        default="M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-", kw_only=True)
    seq_length: int = field(default=131072, kw_only=True)
    hf_model_id: str | None = field(default="nvidia/NVIDIA-Nemotron-Nano-9B-v2", kw_only=True)


@dataclass
class NemotronNanoModelProvider12Bv2(NemotronHModelProvider):
    num_layers: int = 62
    hidden_size: int = 5120
    ffn_hidden_size: int | None = 20480
    num_attention_heads: int = 40
    mamba_num_heads: int | None = 128
    mamba_head_dim: int = 80
    hybrid_override_pattern: str | None = field(
        default="M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-", kw_only=True)
    seq_length: int = field(default=131072, kw_only=True)
    hf_model_id: str | None = field(default="nvidia/NVIDIA-Nemotron-Nano-12B-v2", kw_only=True)


# Megatron Bridge's other spellings.
NemotronHModel8BProvider = NemotronHModelProvider8B
NemotronHModel47BProvider = NemotronHModelProvider47B
NemotronHModel56BProvider = NemotronHModelProvider56B
NemotronNano9Bv2Provider = NemotronNanoModelProvider9Bv2
NemotronNano12Bv2Provider = NemotronNanoModelProvider12Bv2
