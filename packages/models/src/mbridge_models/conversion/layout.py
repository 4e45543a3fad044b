"""How megatron-core fuses projections that Hugging Face models keep separate.

* ``linear_qkv`` holds, for each of the ``num_query_groups`` key/value groups in turn, the query
  heads of that group, then its key head, then its value head: rows
  ``[g0: q.. k v][g1: q.. k v]...``. Tensor parallelism splits whole groups, so a contiguous
  shard of the fused rows is exactly one rank's local weight.
* A gated ``linear_fc1`` (SwiGLU) holds ``[gate; up]``. Under tensor parallelism each rank holds
  ``[gate_r; up_r]``, so its shards are *not* contiguous slices of the full tensor.

The helpers work on any tensor whose first dimension is the output (rows): weights, biases,
LoRA ``B`` matrices and DoRA magnitude vectors alike.
"""

from __future__ import annotations

import torch


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_query_groups: int) -> torch.Tensor:
    """Separate q/k/v rows -> megatron's grouped ``linear_qkv`` rows."""
    groups = num_query_groups
    if q.shape[0] % groups or k.shape[0] % groups or v.shape[0] % groups:
        raise ValueError(f"fuse_qkv: rows q={q.shape[0]}, k={k.shape[0]}, v={v.shape[0]} do not "
                         f"split into num_query_groups={groups}")
    parts = [t.reshape(groups, t.shape[0] // groups, *t.shape[1:]) for t in (q, k, v)]
    return torch.cat(parts, dim=1).reshape(-1, *q.shape[1:])


def split_qkv(qkv: torch.Tensor, num_attention_heads: int,
              num_query_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """megatron's grouped ``linear_qkv`` rows -> (q, k, v) rows in Hugging Face head order."""
    groups, heads = num_query_groups, num_attention_heads
    per_group = heads // groups + 2  # query heads of the group, one key head, one value head
    if heads % groups or qkv.shape[0] % (groups * per_group):
        raise ValueError(f"split_qkv: {qkv.shape[0]} rows do not fit {heads} heads in "
                         f"{groups} groups")
    head_dim = qkv.shape[0] // (groups * per_group)
    grouped = qkv.reshape(groups, per_group * head_dim, *qkv.shape[1:])
    q_rows = (per_group - 2) * head_dim
    q, k, v = torch.split(grouped, [q_rows, head_dim, head_dim], dim=1)
    return tuple(t.reshape(-1, *qkv.shape[1:]) for t in (q, k, v))


def fuse_gated(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Hugging Face gate_proj / up_proj rows -> megatron's gated ``linear_fc1`` rows."""
    return torch.cat([gate, up], dim=0)


def split_gated(fc1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """megatron's gated ``linear_fc1`` rows -> (gate, up)."""
    if fc1.shape[0] % 2:
        raise ValueError(f"split_gated: {fc1.shape[0]} rows cannot be [gate; up]")
    gate, up = fc1.chunk(2, dim=0)
    return gate, up


def shard_rows(full: torch.Tensor, rank: int, size: int, gated: bool = False) -> torch.Tensor:
    """One tensor-parallel rank's rows of an output-sharded tensor (gated: [gate_r; up_r])."""
    if not gated:
        return full.chunk(size, dim=0)[rank]
    gate, up = split_gated(full)
    return torch.cat([gate.chunk(size, dim=0)[rank], up.chunk(size, dim=0)[rank]], dim=0)


def unshard_rows(shards: list[torch.Tensor], gated: bool = False) -> torch.Tensor:
    """Inverse of ``shard_rows``: every rank's rows -> the full tensor."""
    if not gated:
        return torch.cat(shards, dim=0)
    halves = [split_gated(s) for s in shards]
    return torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)
