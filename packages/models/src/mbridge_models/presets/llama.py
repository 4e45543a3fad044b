"""Llama 2, Llama 3 / 3.1 / 3.2, CodeLlama and Llama 4 (language model) presets.

Every number is the published Hugging Face ``config.json`` value of the checkpoint named in the
class's ``hf_model_id`` (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
num_key_value_heads, vocab_size, rope_theta, rope_scaling, rms_norm_eps, tie_word_embeddings).
Llama models: RMSNorm, SwiGLU MLP, RoPE, no biases, untied output layer (Llama 3.2 ties it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn.functional as F

from mbridge_models.gpt_provider import GPTModelProvider


@dataclass
class LlamaModelProvider(GPTModelProvider):
    """What every Llama shares; sizes come from the subclasses."""

    normalization: str = "RMSNorm"
    activation_func: Callable = F.silu
    gated_linear_unit: bool = True
    add_bias_linear: bool = False
    position_embedding_type: str = field(default="rope", kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=False, kw_only=True)
    seq_length: int = field(default=4096, kw_only=True)
    layernorm_epsilon: float = 1e-5
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    bias_activation_fusion: bool = True
    masked_softmax_fusion: bool = True
    persist_layer_norm: bool = False
    init_method_std: float = 0.02


# ----------------------------------------------------------------------------- Llama 2
# meta-llama/Llama-2-{7b,13b,70b}-hf config.json: vocab 32000, rope_theta 10000, rms_norm_eps 1e-5,
# max_position_embeddings 4096.


@dataclass
class Llama2ModelProvider(LlamaModelProvider):
    vocab_size: int | None = field(default=32000, kw_only=True)


@dataclass
class Llama2ModelProvider7B(Llama2ModelProvider):
    num_layers: int = 32
    hidden_size: int = 4096
    ffn_hidden_size: int = 11008
    num_attention_heads: int = 32
    num_query_groups: int = 32
    hf_model_id: str | None = field(default="meta-llama/Llama-2-7b-hf", kw_only=True)


@dataclass
class Llama2ModelProvider13B(Llama2ModelProvider):
    num_layers: int = 40
    hidden_size: int = 5120
    ffn_hidden_size: int = 13824
    num_attention_heads: int = 40
    num_query_groups: int = 40
    hf_model_id: str | None = field(default="meta-llama/Llama-2-13b-hf", kw_only=True)


@dataclass
class Llama2ModelProvider70B(Llama2ModelProvider):
    num_layers: int = 80
    hidden_size: int = 8192
    ffn_hidden_size: int = 28672
    num_attention_heads: int = 64
    num_query_groups: int = 8
    hf_model_id: str | None = field(default="meta-llama/Llama-2-70b-hf", kw_only=True)


# ----------------------------------------------------------------------------- Llama 3 / 3.1
# meta-llama/Meta-Llama-3-8B, -70B config.json: vocab 128256, rope_theta 500000, 8 kv heads,
# max_position_embeddings 8192. Llama 3.1 (meta-llama/Llama-3.1-*): same shapes, 131072
# positions, rope_scaling {rope_type: llama3, factor: 8}.


@dataclass
class Llama3ModelProvider(LlamaModelProvider):
    num_query_groups: int = 8
    rotary_base: int = field(default=500_000, kw_only=True)
    vocab_size: int | None = field(default=128256, kw_only=True)
    seq_length: int = field(default=8192, kw_only=True)
    init_method_std: float = 0.01


@dataclass
class Llama3ModelProvider8B(Llama3ModelProvider):
    num_layers: int = 32
    hidden_size: int = 4096
    ffn_hidden_size: int = 14336
    num_attention_heads: int = 32
    hf_model_id: str | None = field(default="meta-llama/Meta-Llama-3-8B", kw_only=True)


@dataclass
class Llama3ModelProvider70B(Llama3ModelProvider):
    num_layers: int = 80
    hidden_size: int = 8192
    ffn_hidden_size: int = 28672
    num_attention_heads: int = 64
    init_method_std: float = 0.008944
    hf_model_id: str | None = field(default="meta-llama/Meta-Llama-3-70B", kw_only=True)


@dataclass
class Llama31ModelProvider(Llama3ModelProvider):
    rope_scaling: bool = field(default=True, kw_only=True)
    rope_scaling_factor: float = field(default=8.0, kw_only=True)
    seq_length: int = field(default=131072, kw_only=True)
    init_method_std: float = 0.02


@dataclass
class Llama31ModelProvider8B(Llama31ModelProvider):
    num_layers: int = 32
    hidden_size: int = 4096
    ffn_hidden_size: int = 14336
    num_attention_heads: int = 32
    hf_model_id: str | None = field(default="meta-llama/Llama-3.1-8B", kw_only=True)


@dataclass
class Llama31ModelProvider70B(Llama31ModelProvider):
    num_layers: int = 80
    hidden_size: int = 8192
    ffn_hidden_size: int = 28672
    num_attention_heads: int = 64
    hf_model_id: str | None = field(default="meta-llama/Llama-3.1-70B", kw_only=True)


@dataclass
class Llama31ModelProvider405B(Llama31ModelProvider):
    num_layers: int = 126
    hidden_size: int = 16384
    ffn_hidden_size: int = 53248
    num_attention_heads: int = 128
    hf_model_id: str | None = field(default="meta-llama/Llama-3.1-405B", kw_only=True)


# ----------------------------------------------------------------------------- Llama 3.2
# meta-llama/Llama-3.2-1B, -3B config.json: tied embeddings, rope_scaling factor 32, head_dim 64
# (1B: 2048 / 32 heads) and 128 (3B: 3072 / 24 heads).


@dataclass
class Llama32ModelProvider(Llama31ModelProvider):
    rope_scaling_factor: float = field(default=32.0, kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)


@dataclass
class Llama32ModelProvider1B(Llama32ModelProvider):
    num_layers: int = 16
    hidden_size: int = 2048
    ffn_hidden_size: int = 8192
    num_attention_heads: int = 32
    hf_model_id: str | None = field(default="meta-llama/Llama-3.2-1B", kw_only=True)


@dataclass
class Llama32ModelProvider3B(Llama32ModelProvider):
    num_layers: int = 28
    hidden_size: int = 3072
    ffn_hidden_size: int = 8192
    num_attention_heads: int = 24
    hf_model_id: str | None = field(default="meta-llama/Llama-3.2-3B", kw_only=True)


# ----------------------------------------------------------------------------- CodeLlama
# codellama/CodeLlama-{7b,13b,34b,70b}-hf config.json: Llama 2 shapes, rope_theta 1e6,
# max_position_embeddings 16384; vocab 32016 (7B, 13B, 70B: infilling tokens) and 32000 (34B).


@dataclass
class CodeLlamaModelProvider(Llama2ModelProvider):
    rotary_base: int = field(default=1_000_000, kw_only=True)
    seq_length: int = field(default=16384, kw_only=True)
    vocab_size: int | None = field(default=32016, kw_only=True)


@dataclass
class CodeLlamaModelProvider7B(CodeLlamaModelProvider):
    num_layers: int = 32
    hidden_size: int = 4096
    ffn_hidden_size: int = 11008
    num_attention_heads: int = 32
    num_query_groups: int = 32
    hf_model_id: str | None = field(default="codellama/CodeLlama-7b-hf", kw_only=True)


@dataclass
class CodeLlamaModelProvider13B(CodeLlamaModelProvider):
    num_layers: int = 40
    hidden_size: int = 5120
    ffn_hidden_size: int = 13824
    num_attention_heads: int = 40
    num_query_groups: int = 40
    hf_model_id: str | None = field(default="codellama/CodeLlama-13b-hf", kw_only=True)


@dataclass
class CodeLlamaModelProvider34B(CodeLlamaModelProvider):
    num_layers: int = 48
    hidden_size: int = 8192
    ffn_hidden_size: int = 22016
    num_attention_heads: int = 64
    num_query_groups: int = 8
    vocab_size: int | None = field(default=32000, kw_only=True)
    hf_model_id: str | None = field(default="codellama/CodeLlama-34b-hf", kw_only=True)


@dataclass
class CodeLlamaModelProvider70B(CodeLlamaModelProvider):
    num_layers: int = 80
    hidden_size: int = 8192
    ffn_hidden_size: int = 28672
    num_attention_heads: int = 64
    num_query_groups: int = 8
    hf_model_id: str | None = field(default="codellama/CodeLlama-70b-hf", kw_only=True)


# ----------------------------------------------------------------------------- Llama 4
# meta-llama/Llama-4-Scout-17B-16E and -Maverick-17B-128E config.json, text_config: hidden 5120,
# 48 layers, 40 heads / 8 kv heads (head_dim 128), vocab 202048, rope_theta 500000, routed experts
# of intermediate_size 8192 (top-1, sigmoid router) plus one shared expert of the same size,
# dense layers of intermediate_size_mlp 16384, no RoPE on every 4th layer (NoPE).
# Scout: 16 experts, every layer MoE, L2 qk-norm, llama3 rope scaling factor 16 (original
# 8192 positions). Maverick: 128 experts on every other layer (interleave_moe_layer_step 2).
# Not expressible through megatron-core's GPTModel fields (none of them has parameters):
# chunked local attention (attention_chunk_size 8192), NoPE-layer temperature tuning, and
# Scout's llama3 rope scaling with high_freq_factor 1 (megatron fixes it at 4).


@dataclass
class Llama4ModelProvider(Llama3ModelProvider):
    num_layers: int = 48
    hidden_size: int = 5120
    ffn_hidden_size: int = 16384
    num_attention_heads: int = 40
    num_query_groups: int = 8
    kv_channels: int | None = 128
    vocab_size: int | None = field(default=202048, kw_only=True)
    seq_length: int = field(default=8192, kw_only=True)
    rotary_interleaved: bool = True
    no_rope_freq: int | list[int] | None = 4
    moe_ffn_hidden_size: int | None = 8192
    moe_shared_expert_intermediate_size: int | None = 8192
    moe_router_topk: int = 1
    moe_router_pre_softmax: bool = False
    moe_router_score_function: str = "sigmoid"
    moe_apply_probs_on_input: bool = True
    moe_grouped_gemm: bool = False
    moe_token_dispatcher_type: str = "alltoall"
    init_method_std: float = 0.02


@dataclass
class Llama4Experts16ModelProvider(Llama4ModelProvider):
    """Llama 4 Scout (17B active, 16 experts)."""

    num_moe_experts: int | None = 16
    qk_l2_norm: bool = True
    rope_scaling: bool = field(default=True, kw_only=True)
    rope_scaling_factor: float = field(default=16.0, kw_only=True)
    hf_model_id: str | None = field(default="meta-llama/Llama-4-Scout-17B-16E", kw_only=True)


@dataclass
class Llama4Experts128ModelProvider(Llama4ModelProvider):
    """Llama 4 Maverick (17B active, 128 experts on every other layer)."""

    num_moe_experts: int | None = 128
    moe_layer_freq: int | list[int] = field(default_factory=lambda: [0, 1] * 24)
    hf_model_id: str | None = field(default="meta-llama/Llama-4-Maverick-17B-128E", kw_only=True)
