"""Qwen3-MoE config translation: HF config -> provider -> HF config keeps every routing field,
and what megatron-core cannot honour is refused naming the field (HF side and provider side)."""

from __future__ import annotations

import pytest

from mbridge_models.conversion import ConversionError, get_architecture, provider_from_hf_config

BASE = dict(model_type="qwen3_moe", vocab_size=128, hidden_size=64, intermediate_size=96,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True,
            router_aux_loss_coef=0.01, rms_norm_eps=1e-6, max_position_embeddings=64,
            rope_theta=1e6, tie_word_embeddings=False)
ROUTING = ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
           "router_aux_loss_coef", "num_key_value_heads", "head_dim", "rope_theta")


@pytest.mark.parametrize("norm_topk_prob", [True, False])
def test_config_round_trip_keeps_the_routing(norm_topk_prob):
    from transformers import Qwen3MoeConfig

    config = {**BASE, "norm_topk_prob": norm_topk_prob}
    provider = provider_from_hf_config(config)
    assert (provider.num_moe_experts, provider.moe_router_topk, provider.moe_ffn_hidden_size,
            provider.moe_router_pre_softmax, provider.qk_layernorm) == (8, 2, 32,
                                                                        not norm_topk_prob, True)
    back = get_architecture("qwen3_moe").hf_config(provider)
    assert {k: back[k] for k in ROUTING} == {k: config[k] for k in ROUTING}
    rebuilt = Qwen3MoeConfig(**back)  # transformers accepts it
    assert rebuilt.num_experts == 8 and rebuilt.norm_topk_prob == norm_topk_prob


def test_saved_config_spelling_num_local_experts_is_read():
    config = {k: v for k, v in BASE.items() if k != "num_experts"}
    assert provider_from_hf_config({**config, "num_local_experts": 4}).num_moe_experts == 4


@pytest.mark.parametrize("edit, field", [
    ({"decoder_sparse_step": 2}, "decoder_sparse_step"),
    ({"mlp_only_layers": [0]}, "mlp_only_layers"),
    ({"use_sliding_window": True}, "use_sliding_window"),
    ({"attention_bias": True}, "attention_bias"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"num_experts_per_tok": None}, "num_experts_per_tok"),
])
def test_hf_fields_it_cannot_honour_are_named(edit, field):
    with pytest.raises(ConversionError, match=f"config field '?{field}'?") as info:
        provider_from_hf_config({**BASE, **edit})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("edit, field", [
    (dict(moe_shared_expert_intermediate_size=32), "moe_shared_expert_intermediate_size"),
    (dict(moe_router_score_function="sigmoid"), "moe_router_score_function"),
    (dict(moe_layer_freq=[0, 1]), "moe_layer_freq"),
    (dict(qk_layernorm=False), "qk_layernorm"),
])
def test_providers_it_cannot_export_are_named(edit, field):
    from mbridge_models.conversion.llama import architecture_of

    provider = provider_from_hf_config(BASE, **edit)
    arch = architecture_of(provider)
    assert arch.name == "qwen3_moe"
    with pytest.raises(ConversionError, match=f"provider fields? {field}"):
        arch.hf_config(provider)
