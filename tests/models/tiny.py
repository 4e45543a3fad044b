"""Tiny providers of each architecture style and helpers to build them on forked CPU ranks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SEQ, VOCAB = 16, 128


def llama_like(**overrides):
    """RMSNorm, SwiGLU, RoPE, grouped-query attention, untied output (Llama 3 style)."""
    from mbridge_models.gpt_provider import GPTModelProvider

    fields = dict(num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=2,
                  ffn_hidden_size=96, vocab_size=VOCAB, seq_length=SEQ, normalization="RMSNorm",
                  gated_linear_unit=True, activation_func=F.silu, add_bias_linear=False,
                  position_embedding_type="rope", share_embeddings_and_output_weights=False,
                  hidden_dropout=0.0, attention_dropout=0.0, use_cpu_initialization=True,
                  bias_activation_fusion=False, init_method_std=0.05)
    fields.update(overrides)
    return GPTModelProvider(**fields)


def moe_like(**overrides):
    """Qwen3-MoE style: qk-norm, 4 experts top-2 (no shared expert), all layers MoE."""
    fields = dict(qk_layernorm=True, num_moe_experts=4, moe_router_topk=2, moe_ffn_hidden_size=32,
                  moe_aux_loss_coeff=0.0, moe_token_dispatcher_type="alltoall",
                  moe_router_load_balancing_type="none")
    fields.update(overrides)
    return llama_like(**fields)


def batch(seed: int = 0, size: int = 2):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (size, SEQ + 1), generator=generator)
    positions = torch.arange(SEQ).expand(size, -1)
    return tokens[:, :-1], tokens[:, 1:], positions


def built(provider, seed: int = 1234):
    """Initialise megatron's parallel state for ``provider``, seed, and build its model."""
    provider.initialize_model_parallel(seed=seed)
    return provider.provide()


def shard(full: dict, model, gated: bool = True) -> dict:
    """This rank's tensor-parallel shards of a full (TP=1) state dict, by megatron's attributes.

    A gated fc1 holds [gate; up]: each rank holds [its gate rows; its up rows].
    """
    from megatron.core import parallel_state

    rank = parallel_state.get_tensor_model_parallel_rank()
    size = parallel_state.get_tensor_model_parallel_world_size()
    params = dict(model.named_parameters())
    out = {}
    for name, value in full.items():
        param = params.get(name)
        if param is not None and getattr(param, "tensor_model_parallel", False):
            dim = param.partition_dim
            if gated and "linear_fc1" in name:
                gate, up = value.chunk(2, dim=dim)
                out[name] = torch.cat([gate.chunk(size, dim=dim)[rank],
                                       up.chunk(size, dim=dim)[rank]], dim=dim)
            else:
                out[name] = value.chunk(size, dim=dim)[rank].clone()
        else:
            out[name] = value
    return out


def gather(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """Concatenate a tensor-parallel-sharded tensor from every TP rank along ``dim``."""
    from megatron.core import parallel_state

    group = parallel_state.get_tensor_model_parallel_group()
    parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size(group))]
    torch.distributed.all_gather(parts, tensor.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


def teardown():
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()


def cloned_state(model) -> dict:
    """A detached copy of the state dict (megatron keeps None extra-state entries)."""
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in model.state_dict().items()}
