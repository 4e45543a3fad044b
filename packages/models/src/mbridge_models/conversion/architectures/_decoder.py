"""The weight mappings every Llama-style decoder shares (megatron local-spec names; the
Transformer Engine spec's fused norm names are normalised to these before lookup)."""

from mbridge_models.conversion.mapping import WeightMapping as M

L, H = "decoder.layers.*.", "model.layers.*."

EMBEDDING = M("embedding.word_embeddings.weight", "model.embed_tokens.weight", "vocab")
FINAL_NORM = M("decoder.final_layernorm.weight", "model.norm.weight")
OUTPUT = M("output_layer.weight", "lm_head.weight", "vocab")

LAYER = (
    M(L + "input_layernorm.weight", H + "input_layernorm.weight"),
    M(L + "self_attention.linear_qkv.weight",
      (H + "self_attn.q_proj.weight", H + "self_attn.k_proj.weight", H + "self_attn.v_proj.weight"),
      "qkv"),
    M(L + "self_attention.linear_proj.weight", H + "self_attn.o_proj.weight"),
    M(L + "pre_mlp_layernorm.weight", H + "post_attention_layernorm.weight"),
    M(L + "mlp.linear_fc1.weight", (H + "mlp.gate_proj.weight", H + "mlp.up_proj.weight"), "gated"),
    M(L + "mlp.linear_fc2.weight", H + "mlp.down_proj.weight"),
)

QKV_BIAS = M(L + "self_attention.linear_qkv.bias",
             (H + "self_attn.q_proj.bias", H + "self_attn.k_proj.bias", H + "self_attn.v_proj.bias"),
             "qkv")
QK_NORM = (
    M(L + "self_attention.q_layernorm.weight", H + "self_attn.q_norm.weight"),
    M(L + "self_attention.k_layernorm.weight", H + "self_attn.k_norm.weight"),
)

# Mappings that exist only under a provider flag ("!flag": only when it is off).
WHEN = {OUTPUT.megatron: "!share_embeddings_and_output_weights",
        QKV_BIAS.megatron: "add_qkv_bias"}
WHEN.update({m.megatron: "qk_layernorm" for m in QK_NORM})

DENSE = (EMBEDDING, *LAYER, FINAL_NORM, OUTPUT)
