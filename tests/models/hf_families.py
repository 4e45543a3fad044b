"""Tiny random Hugging Face models of every family the registry converts, saved to disk.

2 layers, grouped-query attention (4 heads, 2 groups), random (not 1) norm weights and biases,
so a mapping that swaps, drops or mis-fuses any tensor changes the logits. MoE families have 4
experts, top-2, with a router scaled up so the chosen experts differ from token to token.
"""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

VOCAB, SEQ = 128, 10
BASE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            tie_word_embeddings=False)
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
               "rope_theta": 500000.0}


def _configs(vocab: int = VOCAB):
    from transformers import (DeepseekV2Config, DeepseekV3Config, LlamaConfig, MistralConfig,
                              NemotronConfig, Qwen2Config, Qwen3Config, Qwen3MoeConfig)

    BASE = {**globals()["BASE"], "vocab_size": vocab}

    return {
        # Llama 3.1: llama3 RoPE scaling (the low-frequency half of head_dim 16 is rescaled).
        "llama": LlamaConfig(**BASE, rope_parameters=LLAMA3_ROPE),
        # Llama 3.2 1B/3B: tied embeddings, scaling factor 32.
        "llama_tied": LlamaConfig(**{**BASE, "tie_word_embeddings": True},
                                  rope_parameters={**LLAMA3_ROPE, "factor": 32.0}),
        # Mistral with a sliding window shorter than the prompt: honoured.
        "mistral": MistralConfig(**BASE, sliding_window=4),
        "qwen2": Qwen2Config(**BASE),
        # Qwen3: QK-norm and head_dim 24 != hidden / heads.
        "qwen3": Qwen3Config(**BASE, head_dim=24),
        # Qwen3-MoE: 4 experts, top-2, renormalised top-k weights, QK-norm.
        "qwen3_moe": Qwen3MoeConfig(**BASE, num_experts=4, num_experts_per_tok=2,
                                    moe_intermediate_size=32, norm_topk_prob=True),
        # ... and the raw softmax weights of the top 2 (norm_topk_prob False).
        "qwen3_moe_raw": Qwen3MoeConfig(**BASE, num_experts=4, num_experts_per_tok=2,
                                        moe_intermediate_size=32, norm_topk_prob=False),
        # Nemotron: LayerNorm-1p with biases, squared-ReLU MLP, RoPE on half of head_dim 16.
        "nemotron": NemotronConfig(**BASE, hidden_act="relu2", norm_eps=1e-5,
                                   rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                                    "partial_rotary_factor": 0.5}),
        # DeepSeek-V2: MLA, one dense layer, then 4 routed experts (softmax, top-2 weights not
        # renormalised, scaled 2.0) + a shared expert.
        "deepseek_v2": DeepseekV2Config(
            **{**BASE, "num_key_value_heads": 4}, moe_intermediate_size=32, n_routed_experts=4,
            num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, q_lora_rank=32,
            kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
            topk_method="greedy", routed_scaling_factor=2.0),
        # DeepSeek-V3: MLA (low-rank q), one dense layer then 4 routed experts (sigmoid,
        # selection bias, scaling 2.5) + a shared expert.
        "deepseek_v3": DeepseekV3Config(
            **{**BASE, "num_key_value_heads": 4}, moe_intermediate_size=32, n_routed_experts=4,
            num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, q_lora_rank=32,
            kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_group=1,
            topk_group=1, routed_scaling_factor=2.5),
        # ... with YaRN RoPE (the published checkpoints'), mscale != mscale_all_dim so both
        # the cos/sin and the softmax scaling count.
        "deepseek_v3_yarn": DeepseekV3Config(
            **{**BASE, "num_key_value_heads": 4}, moe_intermediate_size=32, n_routed_experts=4,
            num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, q_lora_rank=32,
            kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_group=1,
            topk_group=1, routed_scaling_factor=2.5,
            rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0,
                             "original_max_position_embeddings": 16, "beta_fast": 32,
                             "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.8}),
    }


def _randomise(model) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("e_score_correction_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            if name.endswith("mlp.gate.weight"):  # MoE router: decisive, token-dependent routing
                p.mul_(20.0)
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g) if "norm" in name
                        else 0.5 * torch.randn(p.shape, generator=g))


def make_families(root, names=None, vocab: int = VOCAB):
    """{family: (folder, HF logits of ``ids``)} and the ``ids`` used."""
    from transformers import AutoModelForCausalLM

    ids = torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(1))
    out = {}
    for name, config in _configs(vocab).items():
        if names is not None and name not in names:
            continue
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        _randomise(model)
        folder = os.path.join(str(root), name)
        model.save_pretrained(folder)
        with torch.no_grad():
            out[name] = (folder, model(ids).logits)
    return out, ids


def save_tiny_tokenizer(folder, vocab: int = VOCAB) -> None:
    """A word-level tokenizer over ``vocab`` tokens ``t0 t1 ...``, saved as tokenizer.json etc."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"t{i}": i for i in range(vocab)}
    core = Tokenizer(models.WordLevel(words, unk_token="t0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="t0", bos_token="t1",
                                        eos_token="t2", pad_token="t3")
    tokenizer.save_pretrained(str(folder))
