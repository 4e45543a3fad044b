"""DeepSeek-V3: multi-latent attention (MLA), dense first layers, then routed experts with a
sigmoid router, a selection bias (``e_score_correction_bias``) and shared experts.

MLA tensors map one to one: megatron's MLA applies RoPE to the DeepSeek interleaved layout
itself (what transformers does for ``rope_interleave: true``). Default RoPE and YaRN (what the
published checkpoints use) are mapped.
"""

from mbridge_models.conversion.architectures import _decoder as d
from mbridge_models.conversion.architectures import _moe
from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.hf_config import decoder_fields, require
from mbridge_models.conversion.mapping import WeightMapping as M
from mbridge_models.conversion.registry import Architecture

NAME = "deepseek_v3"
L, H = d.L, d.H
A, S = L + "self_attention.", H + "self_attn."

MLA = (
    M(A + "linear_q_proj.weight", S + "q_proj.weight"),
    M(A + "linear_q_down_proj.weight", S + "q_a_proj.weight"),
    M(A + "q_layernorm.weight", S + "q_a_layernorm.weight"),
    M(A + "linear_q_up_proj.weight", S + "q_b_proj.weight"),
    M(A + "linear_kv_down_proj.weight", S + "kv_a_proj_with_mqa.weight"),
    M(A + "kv_layernorm.weight", S + "kv_a_layernorm.weight"),
    M(A + "linear_kv_up_proj.weight", S + "kv_b_proj.weight"),
)
COMMON = (d.LAYER[0], d.LAYER[2], d.LAYER[3])  # input norm, o_proj, post-attention norm
DENSE_MLP = (d.LAYER[4], d.LAYER[5])
EXPERT_BIAS = M(L + "mlp.router.expert_bias", H + "mlp.gate.e_score_correction_bias")
SHARED = (
    M(L + "mlp.shared_experts.linear_fc1.weight",
      (H + "mlp.shared_experts.gate_proj.weight", H + "mlp.shared_experts.up_proj.weight"),
      "gated"),
    M(L + "mlp.shared_experts.linear_fc2.weight", H + "mlp.shared_experts.down_proj.weight"),
)
MOE = (*_moe.MOE, EXPERT_BIAS, *SHARED)

WHEN = {d.OUTPUT.megatron: "!share_embeddings_and_output_weights",
        MLA[0].megatron: "!q_lora_rank", **{m.megatron: "q_lora_rank" for m in MLA[1:4]},
        **{m.megatron: "dense_layer" for m in DENSE_MLP}, **{m.megatron: "moe_layer" for m in MOE}}


def refuse(config: dict, field: str, wanted, name: str = NAME) -> None:
    if config.get(field, wanted) != wanted:
        raise ConversionError(f"Hugging Face config field {field}: {config.get(field)!r} is not "
                              f"supported for {name} (needs {wanted!r})")


def provider_fields(config: dict) -> dict:
    refuse(config, "rope_interleave", True)
    refuse(config, "norm_topk_prob", True)
    refuse(config, "scoring_func", "sigmoid")
    refuse(config, "topk_method", "noaux_tc")
    return {**mla_moe_fields(config, NAME), "moe_router_score_function": "sigmoid",
            "moe_router_enable_expert_bias": True}


def mla_moe_fields(config: dict, name: str) -> dict:
    """The fields DeepSeek-V2 and V3 share: MLA, dense first layers, routed + shared experts
    (the router's scoring is each version's own)."""
    refuse(config, "attention_bias", False, name)
    if config.get("q_lora_rank") is None:
        # megatron-core 0.19's MLA has a kv latent norm only with qk_layernorm, and refuses a
        # q norm without q_lora_rank: kv_a_layernorm would have no place.
        raise ConversionError(f"Hugging Face config field q_lora_rank: None (full-rank queries) "
                              f"is not supported for {name}")
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    yarn = rope.get("rope_type", rope.get("type")) == "yarn"
    if yarn:  # the decoder fields read default RoPE; YaRN's own fields are set below
        theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        config = {**config, "rope_scaling": None,
                  "rope_parameters": {"rope_type": "default", "rope_theta": theta}}
    fields = decoder_fields(config)  # refuses rope types other than default / llama3 (/ yarn)
    if fields.get("rope_scaling"):
        raise ConversionError(f"Hugging Face config field rope_parameters.rope_type: 'llama3' "
                              f"is not supported for {name}")
    layers, dense = fields["num_layers"], int(config.get("first_k_dense_replace", 0))
    moe_ffn = int(require(config, "moe_intermediate_size"))
    shared = int(config.get("n_shared_experts") or 0)
    heads = fields["num_attention_heads"]
    fields.update(
        num_query_groups=heads, kv_channels=None, multi_latent_attention=True,
        qk_layernorm=True,
        q_lora_rank=config.get("q_lora_rank"), kv_lora_rank=int(require(config, "kv_lora_rank")),
        qk_head_dim=int(require(config, "qk_nope_head_dim")),
        qk_pos_emb_head_dim=int(require(config, "qk_rope_head_dim")),
        v_head_dim=int(require(config, "v_head_dim")),
        **(yarn_fields(rope, name) if yarn else dict(
            rope_type="rope", rotary_scaling_factor=1.0, mscale=1.0, mscale_all_dim=1.0)),
        num_moe_experts=int(require(config, "n_routed_experts")),
        moe_router_topk=int(require(config, "num_experts_per_tok")),
        moe_ffn_hidden_size=moe_ffn,
        moe_shared_expert_intermediate_size=shared * moe_ffn or None,
        moe_layer_freq=[0] * dense + [1] * (layers - dense),
        moe_router_num_groups=int(config.get("n_group") or 1),
        moe_router_group_topk=int(config.get("topk_group") or 1),
        moe_router_topk_scaling_factor=float(config.get("routed_scaling_factor", 1.0)),
        moe_router_pre_softmax=True, moe_grouped_gemm=False, moe_token_dispatcher_type="alltoall",
        moe_aux_loss_coeff=0.0, mtp_num_layers=None)
    return fields


def yarn_fields(rope: dict, name: str) -> dict:
    """megatron-core's YaRN fields for transformers' ``rope_type: yarn``. transformers scales
    cos/sin by mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both are set, else
    by mscale(factor), and the softmax by mscale(factor, mscale_all_dim)^2 when that is set;
    megatron-core's (mscale, mscale_all_dim) = (1, 0) gives the second case."""
    for field, wanted in (("attention_factor", None), ("truncate", True)):
        if rope.get(field, wanted) != wanted:
            raise ConversionError(f"Hugging Face config field rope_parameters.{field}: "
                                  f"{rope[field]!r} is not supported for {name}")
    mscale, all_dim = rope.get("mscale"), rope.get("mscale_all_dim")
    if all_dim and not mscale:
        raise ConversionError(f"Hugging Face config field rope_parameters.mscale: {mscale!r} "
                              f"with mscale_all_dim {all_dim!r} is not supported for {name}")
    return dict(rope_type="yarn", rotary_scaling_factor=float(require(rope, "factor")),
                original_max_position_embeddings=int(
                    require(rope, "original_max_position_embeddings")),
                beta_fast=float(rope.get("beta_fast") or 32), beta_slow=float(
                    rope.get("beta_slow") or 1),
                mscale=float(mscale) if mscale and all_dim else 1.0,
                mscale_all_dim=float(all_dim) if mscale and all_dim else 0.0)


def hf_config(provider) -> dict:
    raise ConversionError(f"provider without a Hugging Face config.json: writing a {NAME} "
                          "config.json from provider fields is not supported yet")


def _provider_class(**fields):
    from mbridge_models.presets.deepseek import DeepSeekModelProvider

    return DeepSeekModelProvider(**fields)


ARCHITECTURE = Architecture(
    name=NAME, hf_architecture="DeepseekV3ForCausalLM", model_types=(NAME,),
    mappings=(d.EMBEDDING, *COMMON, *MLA, *DENSE_MLP, *MOE, d.FINAL_NORM, d.OUTPUT), when=WHEN,
    provider_fields=provider_fields, hf_config=hf_config, provider_class=_provider_class)
