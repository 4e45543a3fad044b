"""Tiny Llama-shaped megatron models and TP sharding helpers shared by the PEFT tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

VOCAB, HIDDEN, FFN, HEADS, GROUPS, LAYERS, SEQ = 128, 64, 96, 4, 2, 2, 16


def tiny_provider(tp: int = 1, **overrides):
    from mbridge_models.gpt_provider import GPTModelProvider

    fields = dict(
        num_layers=LAYERS, hidden_size=HIDDEN, ffn_hidden_size=FFN, num_attention_heads=HEADS,
        num_query_groups=GROUPS, vocab_size=VOCAB, seq_length=SEQ, normalization="RMSNorm",
        gated_linear_unit=True, activation_func=F.silu, add_bias_linear=False,
        position_embedding_type="rope", share_embeddings_and_output_weights=False,
        transformer_layer_spec="mbridge_local", use_cpu_initialization=True, hidden_dropout=0.0,
        attention_dropout=0.0, tensor_model_parallel_size=tp)
    fields.update(overrides)
    return GPTModelProvider(**fields)


def build(provider, seed: int = 1234):
    """Parallel state for ``provider`` (once per rank) and a fresh model on the CPU."""
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        provider.initialize_model_parallel(seed=seed)
    else:
        from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

        torch.manual_seed(seed)
        model_parallel_cuda_manual_seed(seed)
    return provider.provide()


def tokens(batch: int = 2, seq: int = SEQ, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, seq + 1), generator=g)
    positions = torch.arange(seq).unsqueeze(0).expand(batch, -1)
    return ids[:, :-1], ids[:, 1:], positions


def logits(model, ids, positions):
    """Full-vocabulary logits [b, s, v] (gathered over TP)."""
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    out = model(ids, positions, None)
    return gather_from_tensor_model_parallel_region(out)


def loss(model, ids, labels, positions):
    return model(ids, positions, None, labels=labels).float().mean()


def full_state(model) -> dict[str, torch.Tensor]:
    """The model's base tensors, unsharded (gathered over TP; gated fc1 rows re-ordered)."""
    from mbridge_models.conversion.layout import unshard_rows
    from megatron.core import parallel_state

    size = parallel_state.get_tensor_model_parallel_world_size()
    group = parallel_state.get_tensor_model_parallel_group()
    out = {}
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            continue
        param = _param(model, key)
        if size > 1 and getattr(param, "tensor_model_parallel", False):
            shards = [torch.empty_like(value) for _ in range(size)]
            torch.distributed.all_gather(shards, value.contiguous(), group=group)
            dim = param.partition_dim
            value = (unshard_rows(shards, _gated(key)) if dim == 0
                     else torch.cat(shards, dim=dim))
        out[key] = value.detach().clone()
    return out


@torch.no_grad()
def load_full_state(model, full: dict[str, torch.Tensor]) -> None:
    """Copy full tensors into a (possibly TP-sharded) model: each rank takes its shard."""
    from mbridge_models.conversion.layout import shard_rows
    from megatron.core import parallel_state

    size = parallel_state.get_tensor_model_parallel_world_size()
    rank = parallel_state.get_tensor_model_parallel_rank()
    for key, target in model.state_dict().items():
        if not isinstance(target, torch.Tensor):
            continue
        value = full[key]
        param = _param(model, key)
        if size > 1 and getattr(param, "tensor_model_parallel", False):
            dim = param.partition_dim
            value = (shard_rows(value, rank, size, _gated(key)) if dim == 0
                     else value.chunk(size, dim=dim)[rank])
        target.copy_(value)


def _gated(key: str) -> bool:
    return ".linear_fc1." in key


def _param(model, key):
    """The parameter behind a state-dict key (wrapper keys have no ``to_wrap.``)."""
    params = dict(model.named_parameters())
    if key in params:
        return params[key]
    module, _, leaf = key.rpartition(".")
    return params.get(f"{module}.to_wrap.{leaf}")


def full_adapter_grads(model) -> dict[str, torch.Tensor]:
    """Adapter gradients as full tensors (sharded ones gathered over TP), by checkpoint key."""
    from mbridge_peft import wrappers

    out = {}
    for name, wrapper in wrappers(model):
        adapter, size = wrapper.adapter, wrapper.layout.tp_size
        for key, param in adapter.named_parameters():
            grad = param.grad.detach()
            if key in adapter.sharded_dims() and size > 1:
                shards = [torch.empty_like(grad) for _ in range(size)]
                torch.distributed.all_gather(shards, grad.contiguous(), group=wrapper.layout.tp_group)
                grad = adapter.unshard(key, shards)
            out[f"{name}.adapter.{key}"] = grad.clone()
    return out


def randomise_adapters(model, seed: int = 7, scale: float = 0.2) -> dict[str, torch.Tensor]:
    """Give every adapter tensor (B included) random full values; returns them (full)."""
    from mbridge_peft.state import full_adapter_state_dict, load_full_adapter_state

    g = torch.Generator().manual_seed(seed)
    full = full_adapter_state_dict(model)
    for key, value in full.items():
        noise = torch.randn(value.shape, generator=g) * scale
        full[key] = value * (1 + noise) if key.endswith("weight_magnitude") else noise
    load_full_adapter_state(model, full)
    return full


def backward(loss) -> None:
    """``loss.backward()`` that works under mbridge's CPU runtime with sequence parallelism.

    The runtime redirects CUDA placements through a torch-function mode, and a mode is inactive
    inside its own handler; ``loss.backward()`` / ``torch.autograd.backward`` are torch functions,
    so the whole backward would run without the redirection and megatron's sequence-parallel
    reduce-scatter would allocate on CUDA. Calling the autograd engine directly keeps it on.
    """
    from torch.autograd import Variable

    Variable._execution_engine.run_backward(
        (loss,), (torch.ones_like(loss),), False, False, (), allow_unreachable=True,
        accumulate_grad=True)
