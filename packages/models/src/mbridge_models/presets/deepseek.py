"""DeepSeek-V2, DeepSeek-V2-Lite, DeepSeek-V3 and Moonlight presets: multi-latent attention + MoE.

Numbers are the published Hugging Face ``config.json`` values of each class's ``hf_model_id``
(hidden_size, intermediate_size for the first dense layers, moe_intermediate_size,
n_routed_experts, n_shared_experts, num_experts_per_tok, first_k_dense_replace, q_lora_rank,
kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim, rope_scaling, n_group, topk_group,
routed_scaling_factor, scoring_func, num_nextn_predict_layers).

The providers are megatron-core MLATransformerConfigs as well as GPTModelProviders. The MRO puts
GPTModelProvider (and so the provider mixin's deferred ``__post_init__``) first; ``finalize()``
then runs MLATransformerConfig's validation. Because GPTModelProvider re-declares every
TransformerConfig field, MLATransformerConfig's own defaults for shared fields (normalization,
multi_latent_attention, rotary_*) are shadowed: the base class below restates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn.functional as F
from megatron.core.transformer.transformer_config import MLATransformerConfig

from mbridge_models.gpt_provider import GPTModelProvider


def _first_dense(dense: int, total: int) -> list[int]:
    """moe_layer_freq pattern: the first ``dense`` layers are dense MLPs, the rest MoE."""
    return [0] * dense + [1] * (total - dense)


@dataclass
class DeepSeekModelProvider(GPTModelProvider, MLATransformerConfig):
    """MLA + fine-grained MoE with shared experts (the DeepSeek-V2/V3 family base)."""

    multi_latent_attention: bool = True
    normalization: str = "RMSNorm"
    activation_func: Callable = F.silu
    gated_linear_unit: bool = True
    add_bias_linear: bool = False
    qk_layernorm: bool = True  # RMSNorm on the q and kv latents (q_a/kv_a_layernorm)
    layernorm_epsilon: float = 1e-6
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    bias_activation_fusion: bool = True
    masked_softmax_fusion: bool = True
    persist_layer_norm: bool = False
    init_method_std: float = 0.006
    position_embedding_type: str = field(default="rope", kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=False, kw_only=True)
    seq_length: int = field(default=4096, kw_only=True)
    rotary_base: int = field(default=10000, kw_only=True)
    rotary_percent: float = field(default=1.0, kw_only=True)

    # MLA: DeepSeek-V2/V3 shapes; YaRN RoPE on the decoupled rotary part.
    q_lora_rank: int | None = 1536
    kv_lora_rank: int = 512
    qk_head_dim: int = 128
    qk_pos_emb_head_dim: int = 64
    v_head_dim: int = 128
    rope_type: str = "yarn"
    rotary_scaling_factor: float = 40.0
    original_max_position_embeddings: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float = 1.0

    # MoE
    moe_router_pre_softmax: bool = True
    moe_router_load_balancing_type: str = "seq_aux_loss"
    moe_grouped_gemm: bool = False
    moe_token_dispatcher_type: str = "alltoall"


@dataclass
class DeepSeekV2ModelProvider(DeepSeekModelProvider):
    """deepseek-ai/DeepSeek-V2: 236B total, 21B active."""

    num_layers: int = 60
    hidden_size: int = 5120
    ffn_hidden_size: int = 12288
    num_attention_heads: int = 128
    vocab_size: int | None = field(default=102400, kw_only=True)
    num_moe_experts: int | None = 160
    moe_ffn_hidden_size: int | None = 1536
    moe_shared_expert_intermediate_size: int | None = 2 * 1536  # 2 shared experts
    moe_layer_freq: int | list[int] = field(default_factory=lambda: _first_dense(1, 60))
    moe_router_topk: int = 6
    moe_router_num_groups: int | None = 8
    moe_router_group_topk: int | None = 3
    moe_router_topk_scaling_factor: float | None = 16.0
    moe_aux_loss_coeff: float = 1e-3
    mscale: float = 0.707
    mscale_all_dim: float = 0.707
    hf_model_id: str | None = field(default="deepseek-ai/DeepSeek-V2", kw_only=True)


@dataclass
class DeepSeekV2LiteModelProvider(DeepSeekV2ModelProvider):
    """deepseek-ai/DeepSeek-V2-Lite: 15.7B total; full-rank queries (q_lora_rank null)."""

    num_layers: int = 27
    hidden_size: int = 2048
    ffn_hidden_size: int = 10944
    num_attention_heads: int = 16
    q_lora_rank: int | None = None
    num_moe_experts: int | None = 64
    moe_ffn_hidden_size: int | None = 1408
    moe_shared_expert_intermediate_size: int | None = 2 * 1408
    moe_layer_freq: int | list[int] = field(default_factory=lambda: _first_dense(1, 27))
    moe_router_num_groups: int | None = None
    moe_router_group_topk: int | None = None
    moe_router_topk_scaling_factor: float | None = 1.0
    hf_model_id: str | None = field(default="deepseek-ai/DeepSeek-V2-Lite", kw_only=True)


@dataclass
class DeepSeekV3ModelProvider(DeepSeekModelProvider):
    """deepseek-ai/DeepSeek-V3: 671B main model + one multi-token-prediction layer."""

    num_layers: int = 61
    hidden_size: int = 7168
    ffn_hidden_size: int = 18432
    num_attention_heads: int = 128
    vocab_size: int | None = field(default=129280, kw_only=True)
    num_moe_experts: int | None = 256
    moe_ffn_hidden_size: int | None = 2048
    moe_shared_expert_intermediate_size: int | None = 2048  # 1 shared expert
    moe_layer_freq: int | list[int] = field(default_factory=lambda: _first_dense(3, 61))
    moe_router_topk: int = 8
    moe_router_num_groups: int | None = 8
    moe_router_group_topk: int | None = 4
    moe_router_topk_scaling_factor: float | None = 2.5
    moe_router_score_function: str = "sigmoid"
    moe_router_enable_expert_bias: bool = True
    moe_router_bias_update_rate: float = 1e-3
    moe_aux_loss_coeff: float = 1e-4
    mtp_num_layers: int | None = 1
    mtp_loss_scaling_factor: float | None = 0.1
    hf_model_id: str | None = field(default="deepseek-ai/DeepSeek-V3", kw_only=True)


@dataclass
class MoonlightModelProvider16B(DeepSeekModelProvider):
    """moonshotai/Moonlight-16B-A3B: the DeepSeek-V3 architecture at V2-Lite size, plain RoPE."""

    num_layers: int = 27
    hidden_size: int = 2048
    ffn_hidden_size: int = 11264
    num_attention_heads: int = 16
    q_lora_rank: int | None = None
    vocab_size: int | None = field(default=163840, kw_only=True)
    seq_length: int = field(default=8192, kw_only=True)
    rotary_base: int = field(default=50000, kw_only=True)
    rope_type: str = "rope"
    rotary_scaling_factor: float = 1.0
    layernorm_epsilon: float = 1e-5
    init_method_std: float = 0.02
    num_moe_experts: int | None = 64
    moe_ffn_hidden_size: int | None = 1408
    moe_shared_expert_intermediate_size: int | None = 2 * 1408
    moe_layer_freq: int | list[int] = field(default_factory=lambda: _first_dense(1, 27))
    moe_router_topk: int = 6
    moe_router_topk_scaling_factor: float | None = 2.446
    moe_router_score_function: str = "sigmoid"
    moe_router_enable_expert_bias: bool = True
    moe_router_bias_update_rate: float = 1e-3
    moe_aux_loss_coeff: float = 1e-3
    hf_model_id: str | None = field(default="moonshotai/Moonlight-16B-A3B", kw_only=True)


# Spelling used by the Megatron Bridge migration guide (and NeMo 2's DeepseekV2Config).
DeepseekV2ModelProvider = DeepSeekV2ModelProvider
DeepseekV2LiteModelProvider = DeepSeekV2LiteModelProvider
DeepseekV3ModelProvider = DeepSeekV3ModelProvider
