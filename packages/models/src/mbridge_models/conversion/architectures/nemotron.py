"""Nemotron (transformers' ``nemotron``: Nemotron-4, Minitron): LayerNorm with biases and a
zero-centred gamma ("layernorm1p": HF and megatron both store gamma - 1, so the weights map
as they are), a squared-ReLU MLP that is not gated, RoPE on part of each head."""

from mbridge_models.conversion.architectures import _decoder as d
from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.hf_config import check_provider, decoder_hf_config, shape_fields
from mbridge_models.conversion.mapping import WeightMapping as M
from mbridge_models.conversion.registry import Architecture

L, H = d.L, d.H
QKV, PROJ = d.LAYER[1], d.LAYER[2]
MAPPINGS = (
    d.EMBEDDING,
    M(L + "input_layernorm.weight", H + "input_layernorm.weight"),
    M(L + "input_layernorm.bias", H + "input_layernorm.bias"),
    QKV, PROJ,
    M(L + "pre_mlp_layernorm.weight", H + "post_attention_layernorm.weight"),
    M(L + "pre_mlp_layernorm.bias", H + "post_attention_layernorm.bias"),
    M(L + "mlp.linear_fc1.weight", H + "mlp.up_proj.weight"),
    M(L + "mlp.linear_fc2.weight", H + "mlp.down_proj.weight"),
    d.FINAL_NORM,
    M("decoder.final_layernorm.bias", "model.norm.bias"),
    d.OUTPUT,
)


def _partial_rotary_factor(config: dict) -> float:
    """transformers >= 5 keeps it in ``rope_parameters``, older config.json files at the top."""
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    return float(params.get("partial_rotary_factor", config.get("partial_rotary_factor", 0.5)))


def provider_fields(config: dict) -> dict:
    if config.get("hidden_act", "relu2") != "relu2":
        raise ConversionError(f"Hugging Face config field hidden_act: {config['hidden_act']!r}; "
                              "a nemotron model has relu2 (squared ReLU)")
    for name in ("attention_bias", "mlp_bias"):
        if config.get(name):
            raise ConversionError(f"Hugging Face config field {name}: True is not supported for "
                                  "nemotron")
    return {**shape_fields(config), "layernorm_epsilon": float(config.get("norm_eps", 1e-5)),
            "rotary_percent": _partial_rotary_factor(config)}


def hf_config(provider) -> dict:
    check_provider(provider, "nemotron", {
        "normalization": "LayerNorm", "layernorm_zero_centered_gamma": True,
        "gated_linear_unit": False, "add_bias_linear": False, "add_qkv_bias": False,
        "position_embedding_type": "rope"}, activation="squared_relu")
    config = decoder_hf_config(provider, "nemotron", "NemotronForCausalLM")
    del config["rms_norm_eps"]
    rope = {"rope_type": "default", "rope_theta": config.pop("rope_theta"),
            "partial_rotary_factor": provider.rotary_percent}
    return {**config, "hidden_act": "relu2", "norm_eps": provider.layernorm_epsilon,
            "rope_parameters": rope, "attention_bias": False, "mlp_bias": False}


def _provider_class(**fields):
    from mbridge_models.presets.nemotron import NemotronModelProvider

    return NemotronModelProvider(**fields)


ARCHITECTURE = Architecture(name="nemotron", hf_architecture="NemotronForCausalLM",
                            model_types=("nemotron",), mappings=MAPPINGS, when=d.WHEN,
                            provider_fields=provider_fields, hf_config=hf_config,
                            provider_class=_provider_class)
