"""DeepSeek-V2 config translation: the router megatron-core reproduces (softmax top-k, scaled,
not renormalised; groups only where megatron ranks them as transformers does), and refusals
naming the field for what it cannot honour."""

from __future__ import annotations

import pytest

from mbridge_models.conversion import ConversionError, provider_from_hf_config

V2 = dict(model_type="deepseek_v2", vocab_size=128, hidden_size=64, intermediate_size=96,
          num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
          max_position_embeddings=64, moe_intermediate_size=32, n_routed_experts=8,
          num_experts_per_tok=2, n_shared_experts=2, first_k_dense_replace=1, q_lora_rank=32,
          kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
          topk_method="greedy", routed_scaling_factor=16.0)


def test_the_router_is_softmax_top_k_scaled_and_not_renormalised():
    p = provider_from_hf_config(V2)
    assert (p.moe_router_score_function, p.moe_router_pre_softmax,
            p.moe_router_topk_scaling_factor, p.moe_router_enable_expert_bias,
            p.moe_router_num_groups) == ("softmax", True, 16.0, False, None)
    assert p.moe_layer_freq == [0, 1, 1] and p.moe_shared_expert_intermediate_size == 64


def test_groups_ranked_by_their_best_expert_are_kept():
    p = provider_from_hf_config({**V2, "topk_method": "group_limited_greedy", "n_group": 4,
                                 "topk_group": 2})
    assert (p.moe_router_num_groups, p.moe_router_group_topk) == (4, 2)


YARN = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 40.0,
        "original_max_position_embeddings": 16, "mscale": 0.707, "mscale_all_dim": 0.707}


def test_yarn_reaches_megatrons_fields():
    p = provider_from_hf_config({**V2, "rope_parameters": YARN})
    assert (p.rope_type, p.rotary_scaling_factor, p.original_max_position_embeddings,
            p.beta_fast, p.beta_slow, p.mscale, p.mscale_all_dim) == ("yarn", 40.0, 16, 32.0,
                                                                      1.0, 0.707, 0.707)


@pytest.mark.parametrize("edit, field", [
    ({"rope_parameters": {**YARN, "attention_factor": 1.2}}, "rope_parameters.attention_factor"),
    ({"rope_parameters": {**YARN, "mscale": None}}, "rope_parameters.mscale"),
    ({"topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 1}, "topk_group"),
    ({"topk_method": "noaux_tc"}, "topk_method"),
    ({"q_lora_rank": None}, "q_lora_rank"),
    ({"attention_bias": True}, "attention_bias"),
])
def test_hf_fields_it_cannot_honour_are_named(edit, field):
    with pytest.raises(ConversionError, match=f"config field '?{field}'?") as info:
        provider_from_hf_config({**V2, **edit})
    assert "\n" not in str(info.value)
