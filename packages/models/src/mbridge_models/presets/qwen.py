"""Qwen2, Qwen2.5, Qwen3, Qwen3-MoE and the Qwen2.5-VL language model presets.

Numbers are the published Hugging Face ``config.json`` values of each class's ``hf_model_id``.
All Qwen models: RMSNorm (eps 1e-6), SwiGLU, RoPE (rope_theta 1e6), no linear biases.
Qwen2/2.5 add a bias to the q/k/v projection; Qwen3 drops it and normalises q and k per head
(RMSNorm, head_dim 128). The small models tie the output layer to the embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn.functional as F

from mbridge_models.gpt_provider import GPTModelProvider


@dataclass
class _QwenCommon(GPTModelProvider):
    normalization: str = "RMSNorm"
    activation_func: Callable = F.silu
    gated_linear_unit: bool = True
    add_bias_linear: bool = False
    layernorm_epsilon: float = 1e-6
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    bias_activation_fusion: bool = True
    masked_softmax_fusion: bool = True
    persist_layer_norm: bool = False
    init_method_std: float = 0.02
    position_embedding_type: str = field(default="rope", kw_only=True)
    rotary_base: int = field(default=1_000_000, kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=False, kw_only=True)
    vocab_size: int | None = field(default=151936, kw_only=True)
    seq_length: int = field(default=32768, kw_only=True)


# ----------------------------------------------------------------------------- Qwen2
# Qwen/Qwen2-{0.5B,1.5B,7B,72B} config.json. 0.5B and 1.5B tie embeddings (vocab 151936);
# 7B and 72B do not (vocab 152064).


@dataclass
class Qwen2ModelProvider(_QwenCommon):
    add_qkv_bias: bool = True


@dataclass
class Qwen2ModelProvider500M(Qwen2ModelProvider):
    num_layers: int = 24
    hidden_size: int = 896
    ffn_hidden_size: int = 4864
    num_attention_heads: int = 14
    num_query_groups: int = 2
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2-0.5B", kw_only=True)


@dataclass
class Qwen2ModelProvider1P5B(Qwen2ModelProvider):
    num_layers: int = 28
    hidden_size: int = 1536
    ffn_hidden_size: int = 8960
    num_attention_heads: int = 12
    num_query_groups: int = 2
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2-1.5B", kw_only=True)


@dataclass
class Qwen2ModelProvider7B(Qwen2ModelProvider):
    num_layers: int = 28
    hidden_size: int = 3584
    ffn_hidden_size: int = 18944
    num_attention_heads: int = 28
    num_query_groups: int = 4
    vocab_size: int | None = field(default=152064, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2-7B", kw_only=True)


@dataclass
class Qwen2ModelProvider72B(Qwen2ModelProvider):
    num_layers: int = 80
    hidden_size: int = 8192
    ffn_hidden_size: int = 29568
    num_attention_heads: int = 64
    num_query_groups: int = 8
    vocab_size: int | None = field(default=152064, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2-72B", kw_only=True)


# ----------------------------------------------------------------------------- Qwen2.5
# Qwen/Qwen2.5-{0.5B,1.5B,3B,7B,14B,32B,72B} config.json: the Qwen2 architecture; 0.5B-3B tie
# embeddings (vocab 151936), 7B and larger do not (vocab 152064).


@dataclass
class Qwen25ModelProvider(Qwen2ModelProvider):
    pass


@dataclass
class Qwen25ModelProvider500M(Qwen25ModelProvider):
    num_layers: int = 24
    hidden_size: int = 896
    ffn_hidden_size: int = 4864
    num_attention_heads: int = 14
    num_query_groups: int = 2
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-0.5B", kw_only=True)


@dataclass
class Qwen25ModelProvider1P5B(Qwen25ModelProvider):
    num_layers: int = 28
    hidden_size: int = 1536
    ffn_hidden_size: int = 8960
    num_attention_heads: int = 12
    num_query_groups: int = 2
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-1.5B", kw_only=True)


@dataclass
class Qwen25ModelProvider3B(Qwen25ModelProvider):
    num_layers: int = 36
    hidden_size: int = 2048
    ffn_hidden_size: int = 11008
    num_attention_heads: int = 16
    num_query_groups: int = 2
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-3B", kw_only=True)


@dataclass
class Qwen25ModelProvider7B(Qwen25ModelProvider):
    num_layers: int = 28
    hidden_size: int = 3584
    ffn_hidden_size: int = 18944
    num_attention_heads: int = 28
    num_query_groups: int = 4
    vocab_size: int | None = field(default=152064, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-7B", kw_only=True)


@dataclass
class Qwen25ModelProvider14B(Qwen25ModelProvider):
    num_layers: int = 48
    hidden_size: int = 5120
    ffn_hidden_size: int = 13824
    num_attention_heads: int = 40
    num_query_groups: int = 8
    vocab_size: int | None = field(default=152064, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-14B", kw_only=True)


@dataclass
class Qwen25ModelProvider32B(Qwen25ModelProvider):
    num_layers: int = 64
    hidden_size: int = 5120
    ffn_hidden_size: int = 27648
    num_attention_heads: int = 40
    num_query_groups: int = 8
    vocab_size: int | None = field(default=152064, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-32B", kw_only=True)


@dataclass
class Qwen25ModelProvider72B(Qwen25ModelProvider):
    num_layers: int = 80
    hidden_size: int = 8192
    ffn_hidden_size: int = 29568
    num_attention_heads: int = 64
    num_query_groups: int = 8
    vocab_size: int | None = field(default=152064, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-72B", kw_only=True)


# ----------------------------------------------------------------------------- Qwen3 (dense)
# Qwen/Qwen3-{0.6B,1.7B,4B,8B,14B,32B} config.json: head_dim 128 regardless of hidden size,
# 8 kv heads, qk RMSNorm, max_position_embeddings 40960; 0.6B-4B tie embeddings.


@dataclass
class Qwen3ModelProvider(_QwenCommon):
    qk_layernorm: bool = True
    kv_channels: int | None = 128
    num_query_groups: int = 8
    seq_length: int = field(default=40960, kw_only=True)


@dataclass
class Qwen3ModelProvider600M(Qwen3ModelProvider):
    num_layers: int = 28
    hidden_size: int = 1024
    ffn_hidden_size: int = 3072
    num_attention_heads: int = 16
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen3-0.6B", kw_only=True)


@dataclass
class Qwen3ModelProvider1P7B(Qwen3ModelProvider):
    num_layers: int = 28
    hidden_size: int = 2048
    ffn_hidden_size: int = 6144
    num_attention_heads: int = 16
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen3-1.7B", kw_only=True)


@dataclass
class Qwen3ModelProvider4B(Qwen3ModelProvider):
    num_layers: int = 36
    hidden_size: int = 2560
    ffn_hidden_size: int = 9728
    num_attention_heads: int = 32
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen3-4B", kw_only=True)


@dataclass
class Qwen3ModelProvider8B(Qwen3ModelProvider):
    num_layers: int = 36
    hidden_size: int = 4096
    ffn_hidden_size: int = 12288
    num_attention_heads: int = 32
    hf_model_id: str | None = field(default="Qwen/Qwen3-8B", kw_only=True)


@dataclass
class Qwen3ModelProvider14B(Qwen3ModelProvider):
    num_layers: int = 40
    hidden_size: int = 5120
    ffn_hidden_size: int = 17408
    num_attention_heads: int = 40
    hf_model_id: str | None = field(default="Qwen/Qwen3-14B", kw_only=True)


@dataclass
class Qwen3ModelProvider32B(Qwen3ModelProvider):
    num_layers: int = 64
    hidden_size: int = 5120
    ffn_hidden_size: int = 25600
    num_attention_heads: int = 64
    hf_model_id: str | None = field(default="Qwen/Qwen3-32B", kw_only=True)


# ----------------------------------------------------------------------------- Qwen3 MoE
# Qwen/Qwen3-30B-A3B, Qwen/Qwen3-235B-A22B config.json: every layer MoE (128 experts, top-8,
# softmax router with renormalised top-k, no shared expert), 4 kv heads, head_dim 128.


@dataclass
class Qwen3MoEModelProvider(Qwen3ModelProvider):
    num_moe_experts: int | None = 128
    moe_router_topk: int = 8
    moe_router_pre_softmax: bool = False
    moe_router_load_balancing_type: str = "aux_loss"
    moe_aux_loss_coeff: float = 1e-3
    moe_grouped_gemm: bool = False
    moe_token_dispatcher_type: str = "alltoall"


@dataclass
class Qwen3MoEModelProvider30B_A3B(Qwen3MoEModelProvider):
    num_layers: int = 48
    hidden_size: int = 2048
    ffn_hidden_size: int = 6144
    moe_ffn_hidden_size: int | None = 768
    num_attention_heads: int = 32
    num_query_groups: int = 4
    hf_model_id: str | None = field(default="Qwen/Qwen3-30B-A3B", kw_only=True)


@dataclass
class Qwen3MoEModelProvider235B_A22B(Qwen3MoEModelProvider):
    num_layers: int = 94
    hidden_size: int = 4096
    ffn_hidden_size: int = 12288
    moe_ffn_hidden_size: int | None = 1536
    num_attention_heads: int = 64
    num_query_groups: int = 4
    hf_model_id: str | None = field(default="Qwen/Qwen3-235B-A22B", kw_only=True)


# ----------------------------------------------------------------------------- Qwen2.5-VL
# Qwen/Qwen2.5-VL-{3B,7B,32B,72B}-Instruct config.json: the language model is Qwen2.5 of the same
# size with multimodal RoPE (mrope_section [16, 24, 24] over the 64 rotary frequencies).
# The vision tower (ViT + patch merger) is not part of these providers.


@dataclass
class Qwen25VLModelProvider(Qwen25ModelProvider):
    """The language-model part of Qwen2.5-VL (multimodal RoPE)."""

    position_embedding_type: str = field(default="mrope", kw_only=True)
    mrope_section: list[int] | None = field(default_factory=lambda: [16, 24, 24])
    seq_length: int = field(default=128000, kw_only=True)


@dataclass
class Qwen25VLModelProvider3B(Qwen25VLModelProvider):
    num_layers: int = 36
    hidden_size: int = 2048
    ffn_hidden_size: int = 11008
    num_attention_heads: int = 16
    num_query_groups: int = 2
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-VL-3B-Instruct", kw_only=True)


@dataclass
class Qwen25VLModelProvider7B(Qwen25VLModelProvider):
    num_layers: int = 28
    hidden_size: int = 3584
    ffn_hidden_size: int = 18944
    num_attention_heads: int = 28
    num_query_groups: int = 4
    vocab_size: int | None = field(default=152064, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-VL-7B-Instruct", kw_only=True)


@dataclass
class Qwen25VLModelProvider32B(Qwen25VLModelProvider):
    num_layers: int = 64
    hidden_size: int = 5120
    ffn_hidden_size: int = 27648
    num_attention_heads: int = 40
    num_query_groups: int = 8
    vocab_size: int | None = field(default=152064, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-VL-32B-Instruct", kw_only=True)


@dataclass
class Qwen25VLModelProvider72B(Qwen25VLModelProvider):
    num_layers: int = 80
    hidden_size: int = 8192
    ffn_hidden_size: int = 29568
    num_attention_heads: int = 64
    num_query_groups: int = 8
    vocab_size: int | None = field(default=152064, kw_only=True)
    hf_model_id: str | None = field(default="Qwen/Qwen2.5-VL-72B-Instruct", kw_only=True)
