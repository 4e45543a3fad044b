"""Move weights between Hugging Face tensors and megatron model chunks on any TP / PP layout.

Loading: every rank fills its own parameters, reading from the (memory-mapped) Hugging Face
files only the rows / columns of its tensor-parallel shard; the names, shapes and the set of
tensors are checked before any parameter is touched. Exporting: a generator that, one megatron
tensor at a time, gathers it over the tensor-parallel group, hands it from its pipeline stage
to every stage, and yields its Hugging Face tensor(s).

MoE experts: a rank's ``local_experts.<i>`` (or TE grouped GEMM's ``linear_fc1.weight<i>``) are
renamed to sequential experts with the global index (expert parallelism splits the experts
evenly, in order), and an expert tensor is split and gathered over
the expert-tensor-parallel group (its parameters carry ``allreduce=False``).
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

import torch

from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.layout import unshard_rows
from mbridge_models.conversion.registry import Architecture

_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
_LOCAL_EXPERT = re.compile(r"^mlp\.experts\.local_experts\.(\d+)\.(.+)$")
# Transformer Engine's grouped GEMM experts: one module, expert e's tensor is ``weight<e>``.
_GROUPED_EXPERT = re.compile(r"^mlp\.experts\.(linear_fc[12])\.(weight|bias)(\d+)$")
# The Transformer Engine spec folds the pre-attention / pre-MLP norms into the next linear.
_TE_NORMS = {"self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
             "self_attention.linear_qkv.layer_norm_bias": "input_layernorm.bias",
             "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
             "mlp.linear_fc1.layer_norm_bias": "pre_mlp_layernorm.bias"}
TIED_OUTPUT = "output_layer.weight"
EMBEDDING = "embedding.word_embeddings.weight"


class DictWeights:
    """An in-memory state dict with HFWeights' reading interface."""

    def __init__(self, state: Mapping[str, torch.Tensor], path: str = "Hugging Face state dict"):
        self.state, self.path = dict(state), path

    def names(self) -> list[str]:
        return list(self.state)

    def __contains__(self, name: str) -> bool:
        return name in self.state

    def file_of(self, name: str) -> str:
        return self.path

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.state[name].shape)

    def get(self, name: str, part=None) -> torch.Tensor:
        tensor = self.state[name]
        if part is None:
            return tensor
        dim, start, stop = part
        return tensor.narrow(dim, start, stop - start)


def unwrap(chunk: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside DDP / Float16Module wrappers."""
    while hasattr(chunk, "module") and isinstance(chunk.module, torch.nn.Module):
        chunk = chunk.module
    return chunk


def model_tensors(model: Any) -> dict[str, torch.Tensor]:
    """This rank's tensors under global, local-spec megatron names (layer indices offset by the
    chunk's first layer, TE's fused norm names renamed)."""
    chunks = model if isinstance(model, (list, tuple)) else [model]
    out: dict[str, torch.Tensor] = {}
    for chunk in chunks:
        bare = unwrap(chunk)
        layers = getattr(getattr(bare, "decoder", None), "layers", None)
        offset = layers[0].layer_number - 1 if layers is not None and len(layers) else 0
        experts = _expert_offset(getattr(bare, "config", None))
        for name, tensor in bare.state_dict(keep_vars=True).items():
            if name.endswith("_extra_state") or tensor is None or ".adapter." in name:
                continue
            out[_canonical(name, offset, experts)] = tensor
    return out


def _expert_offset(config: Any) -> int:
    """The global index of this rank's first local expert."""
    from megatron.core import parallel_state as ps

    total = getattr(config, "num_moe_experts", None)
    if not total or not ps.model_parallel_is_initialized():
        return 0
    return ps.get_expert_model_parallel_rank() * (total // ps.get_expert_model_parallel_world_size())


def _canonical(name: str, offset: int, expert_offset: int = 0) -> str:
    found = _LAYER.match(name)
    if not found:
        return name
    index, rest = found.groups()
    expert = _LOCAL_EXPERT.match(rest)
    if expert:
        rest = f"mlp.experts.local_experts.{int(expert.group(1)) + expert_offset}.{expert.group(2)}"
    grouped = _GROUPED_EXPERT.match(rest)
    if grouped:
        linear, kind, local = grouped.groups()
        rest = f"mlp.experts.local_experts.{int(local) + expert_offset}.{linear}.{kind}"
    return f"decoder.layers.{int(index) + offset}.{_TE_NORMS.get(rest, rest)}"


def _tp(tensor: torch.Tensor | None = None) -> tuple[int, int, Any]:
    """(rank, size, group) of the tensor-parallel group that splits ``tensor``: the expert one
    for expert parameters (megatron marks them ``allreduce=False``)."""
    from megatron.core import parallel_state as ps

    if not ps.model_parallel_is_initialized():
        return 0, 1, None
    if tensor is not None and not getattr(tensor, "allreduce", True):
        return (ps.get_expert_tensor_parallel_rank(), ps.get_expert_tensor_parallel_world_size(),
                ps.get_expert_tensor_parallel_group())
    return (ps.get_tensor_model_parallel_rank(), ps.get_tensor_model_parallel_world_size(),
            ps.get_tensor_model_parallel_group())


def _partition_dim(tensor: torch.Tensor) -> int | None:
    return tensor.partition_dim if getattr(tensor, "tensor_model_parallel", False) else None


def _full_shape(tensor: torch.Tensor, dim: int | None, size: int) -> tuple[int, ...]:
    shape = list(tensor.shape)
    if dim is not None:
        shape[dim] *= size
    return tuple(shape)


def _mapping(arch: Architecture, name: str, provider: Any):
    if name == TIED_OUTPUT and provider.share_embeddings_and_output_weights:
        name = EMBEDDING  # the last pipeline stage's copy of the tied embedding
    return arch.mapping_for(name)


def check_tensor_set(source: Any, arch: Architecture, provider: Any) -> None:
    """Missing and unexpected Hugging Face tensors, each named, before anything loads."""
    expected = arch.hf_names(provider)
    wanted = set(expected)
    present = set(source.names())
    for name in expected:
        if name not in present:
            raise ConversionError(f"{source.path}: has no tensor {name} (a {arch.name} model of "
                                  f"{provider.num_layers} layers needs it)")
    tied = provider.share_embeddings_and_output_weights
    for name in sorted(present - wanted):
        if arch.is_ignored(name) or (tied and name == "lm_head.weight"):
            continue
        raise ConversionError(f"{source.file_of(name)}: unexpected tensor {name} (no place in a "
                              f"{arch.name} model of {provider.num_layers} layers)")


def load_hf_weights(model: Any, source: Any, provider: Any, arch: Architecture,
                    progress=None) -> None:
    """Fill this rank's parameters of ``model`` (a chunk or list of chunks) from ``source``
    (HFWeights, DictWeights or a plain state dict). Collective only in the sense that every rank
    calls it; ranks read independently. ``progress(items, total)`` wraps the copy loop (a
    progress bar)."""
    if isinstance(source, Mapping):
        source = DictWeights(source)
    check_tensor_set(source, arch, provider)
    plan = []
    for name, param in model_tensors(model).items():
        mapping, values = _mapping(arch, name, provider)
        rank, size, _ = _tp(param)
        dim = _partition_dim(param)
        full = _full_shape(param, dim, size)
        hf_names = mapping.hf_names(values)
        for hf_name, want in zip(hf_names, mapping.hf_shapes(full, provider)):
            got = source.shape(hf_name)
            if got != tuple(want):
                raise ConversionError(f"{source.file_of(hf_name)}: tensor {hf_name} has shape "
                                      f"{got}, the model needs {tuple(want)} (for {name})")
        plan.append((name, param, mapping, hf_names, dim, full, rank, size))
    steps = plan if progress is None else progress(plan, len(plan))
    with torch.no_grad():
        for name, param, mapping, hf_names, dim, full, rank, size in steps:
            parts = mapping.hf_slices(full, dim, rank, size, provider)
            tensors = [source.get(n, p) for n, p in zip(hf_names, parts)]
            local = mapping.to_megatron(tensors, tuple(param.shape), dim, provider, size)
            if tuple(local.shape) != tuple(param.shape):
                raise ConversionError(f"{name}: converted shape {tuple(local.shape)} != the "
                                      f"model's {tuple(param.shape)}")
            param.copy_(local)


def _gather_tp(tensor: torch.Tensor, mapping) -> torch.Tensor:
    dim = _partition_dim(tensor)
    _, size, group = _tp(tensor)
    tensor = tensor.detach()
    if dim is None or size == 1:
        return tensor
    shards = [torch.empty_like(tensor) for _ in range(size)]
    torch.distributed.all_gather(shards, tensor.contiguous(), group=group)
    if mapping.kind == "gated":
        return unshard_rows(shards, gated=True)
    return torch.cat(shards, dim=dim)


def export_hf_weights(model: Any, provider: Any, arch: Architecture,
                      cpu: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(hf_name, tensor)`` in Hugging Face order, one megatron tensor gathered at a time;
    every rank of the model-parallel group must iterate (the gathers are collective), and every
    rank receives every tensor. Padded vocabulary rows are dropped, a tied output layer is not
    exported (the embedding is), dtypes are the model's."""
    local = model_tensors(model)
    owners = _owners(local)
    for mapping, values in arch.entries(provider):
        name = mapping.megatron_name(values)
        if owners is None:
            if name not in local:
                raise ConversionError(f"the model has no tensor {name} (layer spec or provider "
                                      f"fields other than the {arch.name} mapping expects)")
            full = _gather_tp(local[name], mapping)
        else:
            if name not in owners:
                raise ConversionError(f"no rank holds tensor {name} (layer spec or provider "
                                      f"fields other than the {arch.name} mapping expects)")
            source, shape, dtype = owners[name]
            full = (_gather_tp(local[name], mapping) if name in local
                    else torch.empty(shape, dtype=dtype, device=_device(local)))
            torch.distributed.broadcast(full.contiguous(), source)
        for hf_name, tensor in zip(mapping.hf_names(values), mapping.to_hf(full, provider)):
            yield hf_name, (tensor.cpu() if cpu else tensor)


def _device(local: dict) -> torch.device:
    return next(iter(local.values())).device if local else torch.device("cpu")


def _owners(local: dict) -> dict | None:
    """Under pipeline or expert parallelism (a rank lacks some tensors): megatron name ->
    (lowest global rank holding it, full shape, dtype); else None (every rank holds all)."""
    from megatron.core import parallel_state as ps

    if not ps.model_parallel_is_initialized() or (
            ps.get_pipeline_model_parallel_world_size() == 1
            and ps.get_expert_model_parallel_world_size() == 1):
        return None
    mine = {n: (_full_shape(t, _partition_dim(t), _tp(t)[1]), t.dtype) for n, t in local.items()}
    ranks: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(ranks, mine)
    owners = {}
    for rank, names in enumerate(ranks):
        for name, (shape, dtype) in names.items():
            owners.setdefault(name, (rank, shape, dtype))
    return owners
