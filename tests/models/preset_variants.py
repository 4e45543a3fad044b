"""Tiny variants of each preset family: the family's own class with small dimensions.

Same class, same code path (norm type, gating, biases, qk-norm, MLA, MoE layout, MTP,
position embedding), only the sizes shrink, so megatron-core builds them on a CPU in well under
a second. Used by the counting cross-check and the forward/backward test.
"""

from __future__ import annotations

SEQ, VOCAB = 16, 128

# Small shapes shared by every transformer family.
_SMALL = dict(num_layers=2, hidden_size=64, ffn_hidden_size=96, num_attention_heads=4,
              num_query_groups=2, kv_channels=16, vocab_size=VOCAB, seq_length=SEQ)
_MOE = dict(num_moe_experts=4, moe_router_topk=2, moe_ffn_hidden_size=32,
            moe_aux_loss_coeff=0.0)
_MLA = dict(q_lora_rank=32, kv_lora_rank=16, qk_head_dim=16, qk_pos_emb_head_dim=8,
            v_head_dim=16, original_max_position_embeddings=SEQ)
# On a CPU: no torch.compile'd fused activation (numerically the same function), CPU init.
_CPU = dict(use_cpu_initialization=True, bias_activation_fusion=False,
            transformer_layer_spec="local")


def _tiny(cls, **overrides):
    fields = {**_SMALL, **_CPU}
    fields.update(overrides)
    return cls(**fields)


def transformer_variants() -> dict[str, object]:
    """name -> tiny provider, one per transformer family (and feature combination)."""
    from mbridge_models import presets as P

    return {
        "llama2": _tiny(P.Llama2ModelProvider7B, num_query_groups=4),
        "llama3": _tiny(P.Llama3ModelProvider8B),
        "llama31": _tiny(P.Llama31ModelProvider8B),
        "llama32_tied": _tiny(P.Llama32ModelProvider1B),
        "codellama": _tiny(P.CodeLlamaModelProvider34B),
        "llama4_scout": _tiny(P.Llama4Experts16ModelProvider, num_layers=4, **_MOE,
                              moe_shared_expert_intermediate_size=32),
        "llama4_maverick": _tiny(P.Llama4Experts128ModelProvider, num_layers=4, **_MOE,
                                 moe_shared_expert_intermediate_size=32,
                                 moe_layer_freq=[0, 1, 0, 1]),
        "qwen2_qkv_bias": _tiny(P.Qwen2ModelProvider7B),
        "qwen25_tied": _tiny(P.Qwen25ModelProvider500M),
        "qwen3_qk_norm": _tiny(P.Qwen3ModelProvider8B),
        "qwen3_moe": _tiny(P.Qwen3MoEModelProvider30B_A3B, **_MOE),
        "qwen25_vl": _tiny(P.Qwen25VLModelProvider7B, mrope_section=[2, 3, 3]),
        "deepseek_v2": _tiny(P.DeepSeekV2ModelProvider, **_MOE, **_MLA,
                             moe_shared_expert_intermediate_size=64, moe_layer_freq=[0, 1],
                             moe_router_num_groups=2, moe_router_group_topk=1),
        "deepseek_v2_lite": _tiny(P.DeepSeekV2LiteModelProvider, **_MOE,
                                  **{**_MLA, "q_lora_rank": None},
                                  moe_shared_expert_intermediate_size=64,
                                  moe_layer_freq=[0, 1]),
        "deepseek_v3_mtp": _tiny(P.DeepSeekV3ModelProvider, **_MOE, **_MLA,
                                 moe_shared_expert_intermediate_size=32, moe_layer_freq=[0, 1],
                                 moe_router_num_groups=2, moe_router_group_topk=1),
        "moonlight": _tiny(P.MoonlightModelProvider16B, **_MOE,
                           **{**_MLA, "q_lora_rank": None},
                           moe_shared_expert_intermediate_size=64, moe_layer_freq=[0, 1]),
        "nemotron3": _tiny(P.Nemotron3ModelProvider8B),
        "nemotron4": _tiny(P.Nemotron4ModelProvider15B),
        # Features no preset uses, through the same counting paths.
        "gpt_learned_abs_bias": _tiny(P.Nemotron3ModelProvider22B, position_embedding_type=
                                      "learned_absolute", add_bias_linear=True,
                                      num_query_groups=None, kv_channels=None),
    }


def mamba_variants() -> dict[str, object]:
    from mbridge_models import presets as P

    return {
        "mamba2": _tiny(P.MambaModelProvider130M, num_layers=2, mamba_head_dim=16,
                        mamba_state_dim=8),
        "nemotron_h": _tiny(P.NemotronHModelProvider8B, num_layers=4, mamba_num_heads=8,
                            mamba_head_dim=16, mamba_state_dim=8, mamba_num_groups=2,
                            hybrid_override_pattern="M-*-"),
    }
