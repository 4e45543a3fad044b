"""Nemotron config translation: HF config -> provider -> HF config keeps the fields that shape
the model (partial RoPE, LayerNorm-1p epsilon, squared ReLU), a provider without a config.json
exports as nemotron, and what megatron-core cannot honour is refused naming the field."""

from __future__ import annotations

import pytest

from mbridge_models.conversion import ConversionError, provider_from_hf_config
from mbridge_models.conversion.llama import architecture_of

BASE = dict(model_type="nemotron", vocab_size=128, hidden_size=64, intermediate_size=96,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            hidden_act="relu2", norm_eps=1e-5, max_position_embeddings=64,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                             "partial_rotary_factor": 0.25})
KEPT = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act", "norm_eps",
        "rope_parameters")


def test_config_round_trip_keeps_the_shape_of_the_model():
    from transformers import NemotronConfig

    provider = provider_from_hf_config(BASE)
    assert (provider.rotary_percent, provider.normalization,
            provider.layernorm_zero_centered_gamma, provider.gated_linear_unit,
            provider.activation_func.__name__) == (0.25, "LayerNorm", True, False, "squared_relu")
    arch = architecture_of(provider)  # what an export without a config.json uses
    assert arch.name == "nemotron"
    back = arch.hf_config(provider)
    assert {k: back[k] for k in KEPT} == {k: BASE[k] for k in KEPT}
    rebuilt = NemotronConfig(**back)  # transformers accepts it
    assert rebuilt.rope_parameters["partial_rotary_factor"] == 0.25


def test_older_config_files_keep_partial_rotary_factor_at_the_top():
    old = {**{k: v for k, v in BASE.items() if k != "rope_parameters"}, "rope_theta": 1e4,
           "partial_rotary_factor": 0.5}
    assert provider_from_hf_config(old).rotary_percent == 0.5


@pytest.mark.parametrize("edit, field", [
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
])
def test_hf_fields_it_cannot_honour_are_named(edit, field):
    with pytest.raises(ConversionError, match=f"config field '?{field}'?") as info:
        provider_from_hf_config({**BASE, **edit})
    assert "\n" not in str(info.value)


def test_providers_it_cannot_export_are_named():
    provider = provider_from_hf_config(BASE, add_qkv_bias=True)
    with pytest.raises(ConversionError, match="provider field add_qkv_bias"):
        architecture_of(provider).hf_config(provider)
