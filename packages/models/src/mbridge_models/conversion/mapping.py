"""Declarative weight mappings: one megatron tensor <-> its Hugging Face tensor(s).

A pattern names a tensor with ``*`` standing for a layer (or expert) index, e.g.
``decoder.layers.*.mlp.linear_fc1.weight`` <-> (``model.layers.*.mlp.gate_proj.weight``,
``model.layers.*.mlp.up_proj.weight``). The kind says how the tensors relate:

* ``direct``: the same tensor (norms, projections that are not fused).
* ``vocab``: embedding / output rows; megatron may pad the vocabulary, the padded rows are zero
  on import and dropped on export.
* ``qkv``: megatron's grouped fused ``linear_qkv`` <-> separate q / k / v (GQA aware).
* ``gated``: megatron's ``[gate; up]`` ``linear_fc1`` <-> gate_proj / up_proj.

Tensor parallelism needs nothing here: a megatron parameter says itself whether and along which
dimension it is split (``tensor_model_parallel`` / ``partition_dim``); the kind says how a
rank's rows are laid out in the Hugging Face tensors (see ``hf_slices``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.layout import fuse_gated, fuse_qkv, split_gated, split_qkv

KINDS = ("direct", "vocab", "qkv", "gated")

# (dim, start, stop) of one Hugging Face tensor, or None for all of it.
Slice = tuple[int, int, int] | None


def _regex(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(r"\*", r"(\d+)") + "$")


@dataclass(frozen=True)
class WeightMapping:
    megatron: str
    hf: tuple[str, ...]
    kind: str = "direct"
    _regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.hf, str):
            object.__setattr__(self, "hf", (self.hf,))
        if self.kind not in KINDS:
            raise ValueError(f"WeightMapping {self.megatron}: kind {self.kind!r} is not one of "
                             f"{', '.join(KINDS)}")
        wanted = {"qkv": 3, "gated": 2}.get(self.kind, 1)
        if len(self.hf) != wanted:
            raise ValueError(f"WeightMapping {self.megatron}: kind {self.kind} needs {wanted} "
                             f"Hugging Face names, got {len(self.hf)}")
        object.__setattr__(self, "_regex", _regex(self.megatron))

    # ------------------------------------------------------------------ names

    def match(self, megatron_name: str) -> tuple[str, ...] | None:
        """The wildcard values when ``megatron_name`` fits this mapping, else None."""
        found = self._regex.match(megatron_name)
        return found.groups() if found else None

    @property
    def wildcards(self) -> int:
        return self.megatron.count("*")

    def hf_names(self, values: tuple[str, ...] = ()) -> tuple[str, ...]:
        return tuple(_fill(p, values) for p in self.hf)

    def megatron_name(self, values: tuple[str, ...] = ()) -> str:
        return _fill(self.megatron, values)

    # ------------------------------------------------------------------ shapes

    def hf_shapes(self, full: tuple[int, ...], provider: Any) -> tuple[tuple[int, ...], ...]:
        """The Hugging Face shapes that make a megatron tensor of (unsharded) shape ``full``."""
        rest = tuple(full[1:])
        if self.kind == "direct":
            return (tuple(full),)
        if self.kind == "vocab":
            return ((provider.vocab_size, *rest),)
        if self.kind == "gated":
            return ((full[0] // 2, *rest),) * 2
        q_rows, kv_rows = _qkv_rows(provider)
        return ((q_rows, *rest), (kv_rows, *rest), (kv_rows, *rest))

    # ------------------------------------------------------------------ import

    def hf_slices(self, full: tuple[int, ...], dim: int | None, rank: int, size: int,
                  provider: Any) -> tuple[Slice, ...]:
        """Which part of each Hugging Face tensor a tensor-parallel rank needs (``dim``: the
        megatron partition dimension, None when replicated). Reading only that part keeps a
        rank's memory near its own shard."""
        count = len(self.hf)
        if dim is None or size == 1:
            return (None,) * count
        if dim != 0:  # row-parallel input dimension: same columns of one tensor
            step = full[dim] // size
            return ((dim, rank * step, (rank + 1) * step),)
        if self.kind == "vocab":
            step = full[0] // size
            start, stop = rank * step, (rank + 1) * step
            vocab = provider.vocab_size
            return ((0, min(start, vocab), min(stop, vocab)),)
        if self.kind == "gated":
            step = full[0] // 2 // size
            return ((0, rank * step, (rank + 1) * step),) * 2
        if self.kind == "qkv":
            groups = provider.num_query_groups or provider.num_attention_heads
            per = groups // size
            q_rows, kv_rows = _qkv_rows(provider)
            q_group, kv_group = q_rows // groups, kv_rows // groups
            g0, g1 = rank * per, (rank + 1) * per
            return ((0, g0 * q_group, g1 * q_group), (0, g0 * kv_group, g1 * kv_group),
                    (0, g0 * kv_group, g1 * kv_group))
        step = full[0] // size
        return ((0, rank * step, (rank + 1) * step),)

    def to_megatron(self, tensors: list[torch.Tensor], local_shape: tuple[int, ...],
                    dim: int | None, provider: Any, size: int = 1) -> torch.Tensor:
        """Hugging Face tensors (already sliced for this rank) -> the rank's megatron tensor."""
        if self.kind == "qkv":
            groups = provider.num_query_groups or provider.num_attention_heads
            local_groups = groups // size if dim == 0 else groups
            return fuse_qkv(*tensors, local_groups)
        if self.kind == "gated":
            return fuse_gated(*tensors)
        (tensor,) = tensors
        if self.kind == "vocab" and tensor.shape[0] < local_shape[0]:
            tensor = F.pad(tensor, (0, 0) * (tensor.dim() - 1) + (0, local_shape[0] - tensor.shape[0]))
        return tensor

    # ------------------------------------------------------------------ export

    def to_hf(self, full: torch.Tensor, provider: Any) -> tuple[torch.Tensor, ...]:
        """A full (gathered) megatron tensor -> its Hugging Face tensors."""
        if self.kind == "qkv":
            groups = provider.num_query_groups or provider.num_attention_heads
            return split_qkv(full, provider.num_attention_heads, groups)
        if self.kind == "gated":
            return split_gated(full)
        if self.kind == "vocab":
            return (full[: provider.vocab_size],)
        return (full,)


def _fill(pattern: str, values: tuple[str, ...]) -> str:
    parts = pattern.split("*")
    if len(parts) - 1 != len(values):
        raise ConversionError(f"{pattern}: needs {len(parts) - 1} index values, got {len(values)}")
    out = parts[0]
    for value, part in zip(values, parts[1:]):
        out += str(value) + part
    return out


def _qkv_rows(provider: Any) -> tuple[int, int]:
    heads = provider.num_attention_heads
    groups = provider.num_query_groups or heads
    head_dim = provider.kv_channels or provider.hidden_size // heads
    return heads * head_dim, groups * head_dim
