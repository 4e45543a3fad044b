"""Nemotron-3 (Minitron) and Nemotron-4 presets: squared-ReLU MLP, LayerNorm-1p, partial RoPE.

Sources: nvidia/Minitron-4B-Base and nvidia/Minitron-8B-Base config.json (hidden_size,
intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
vocab_size 256000, partial_rotary_factor 0.5); the Nemotron-4 15B and 340B technical reports
(arXiv 2402.16819, 2406.11704) for Nemotron-4 (layers, hidden size, heads, 8 KV heads, 4096
sequence length, 256000 vocabulary, untied output layer). Nemotron-3 22B has no public
checkpoint: its shape is NeMo's ``Nemotron3Config22B``.

The MLP is not gated (squared ReLU); norms are LayerNorm with zero-centred gamma (weight stored
as gamma - 1, "layernorm1p"), which Transformer Engine implements; megatron-core's torch norm
rejects it. Parameter counts do not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from mbridge_models.gpt_provider import GPTModelProvider


def squared_relu(x: torch.Tensor) -> torch.Tensor:
    """relu(x)^2 in plain torch (megatron-core's version is torch.compile'd: a long first call
    on a CPU)."""
    return F.relu(x).square()


@dataclass
class NemotronModelProvider(GPTModelProvider):
    normalization: str = "LayerNorm"
    layernorm_zero_centered_gamma: bool = True
    layernorm_epsilon: float = 1e-5
    activation_func: Callable = squared_relu
    gated_linear_unit: bool = False
    add_bias_linear: bool = False
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    bias_activation_fusion: bool = False
    masked_softmax_fusion: bool = True
    persist_layer_norm: bool = False
    position_embedding_type: str = field(default="rope", kw_only=True)
    rotary_percent: float = field(default=0.5, kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=False, kw_only=True)
    vocab_size: int | None = field(default=256000, kw_only=True)
    seq_length: int = field(default=4096, kw_only=True)


@dataclass
class Nemotron3ModelProvider4B(NemotronModelProvider):
    """Minitron-4B (pruned and distilled from Nemotron-4 15B)."""

    num_layers: int = 32
    hidden_size: int = 3072
    ffn_hidden_size: int = 9216
    num_attention_heads: int = 24
    num_query_groups: int = 8
    kv_channels: int | None = 128
    init_method_std: float = 0.0134
    hf_model_id: str | None = field(default="nvidia/Minitron-4B-Base", kw_only=True)


@dataclass
class Nemotron3ModelProvider8B(NemotronModelProvider):
    """Minitron-8B (pruned and distilled from Nemotron-4 15B)."""

    num_layers: int = 32
    hidden_size: int = 4096
    ffn_hidden_size: int = 16384
    num_attention_heads: int = 48
    num_query_groups: int = 8
    kv_channels: int | None = 128
    init_method_std: float = 0.010
    hf_model_id: str | None = field(default="nvidia/Minitron-8B-Base", kw_only=True)


@dataclass
class Nemotron3ModelProvider22B(NemotronModelProvider):
    """Nemotron-3 22B (multi-head attention; no public checkpoint)."""

    num_layers: int = 40
    hidden_size: int = 6144
    ffn_hidden_size: int = 24576
    num_attention_heads: int = 48
    init_method_std: float = 0.008


@dataclass
class Nemotron4ModelProvider15B(NemotronModelProvider):
    num_layers: int = 32
    hidden_size: int = 6144
    ffn_hidden_size: int = 24576
    num_attention_heads: int = 48
    num_query_groups: int = 8
    init_method_std: float = 0.0134


@dataclass
class Nemotron4ModelProvider340B(NemotronModelProvider):
    num_layers: int = 96
    hidden_size: int = 18432
    ffn_hidden_size: int = 73728
    num_attention_heads: int = 96
    num_query_groups: int = 8
    init_method_std: float = 0.0063
    hf_model_id: str | None = field(default="nvidia/Nemotron-4-340B-Base", kw_only=True)
