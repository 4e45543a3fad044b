"""Adapter parameters and their tensor-parallel-correct forward.

Conventions (megatron weights are [out, in]; A is [r, in], B is [out, r]):

* column-parallel base (output-sharded): B is sharded on its rows like the base weight (a gated
  fc1's rows as [gate_r; up_r]); A is replicated. Each rank's bottleneck ``h = A x`` is complete,
  but its gradient is a partial sum over ranks (each sees only its B rows), so ``h`` passes through
  megatron's copy-to-TP region (identity forward, all-reduce backward). Under sequence parallelism
  the adapter gathers the sequence itself and hands back only its slice of the input gradient.
* row-parallel base (input-sharded): A is sharded on its columns like the base weight; B is
  replicated. ``h = A_r x_r`` is partial, so it is all-reduced (rank-r wide: cheap) before B, and
  the output is then split over the sequence when the base reduce-scatters.
* MoE experts with explicit communication (the dispatcher gathers tokens before the experts and
  reduce-scatters after): the adapter keeps the base's partial input gradient / partial output and
  all-reduces the gradient of its replicated weight instead.

With these rules a TP=N adapter computes exactly what the TP=1 adapter computes on the same full
weights (up to summation order).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from megatron.core.tensor_parallel import get_cuda_rng_tracker
from megatron.core.tensor_parallel.layers import set_tensor_model_parallel_attributes
from megatron.core.tensor_parallel.mappings import (
    copy_to_tensor_model_parallel_region,
    gather_from_sequence_parallel_region,
    gather_from_tensor_model_parallel_region,
    reduce_from_tensor_model_parallel_region,
    scatter_to_sequence_parallel_region,
    scatter_to_tensor_model_parallel_region,
)
from torch import nn

from mbridge_models.conversion.layout import shard_rows, unshard_rows
from mbridge_peft import compute
from mbridge_peft.linears import LinearLayout


def _xavier(t, g):
    return nn.init.xavier_normal_(t, generator=g)


def _kaiming(t, g):
    return nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=g)


def _normal(t, g):
    return nn.init.normal_(t, std=0.02, generator=g)


def _zero(t, g):
    return nn.init.zeros_(t)


INIT_METHODS = {"xavier": _xavier, "kaiming": _kaiming, "normal": _normal, "zero": _zero}
"""Adapter initialisations: xavier (normal), kaiming (uniform, a=sqrt(5), torch's nn.Linear
default), normal (std 0.02), zero."""


def init_full(method: str, shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """The full (unsharded) float32 tensor; ranks then take their shard, so the initial adapter
    is the same whatever the tensor-parallel size."""
    return INIT_METHODS[method](torch.empty(shape), generator)


class _Weight(nn.Module):
    """Holds one matrix as ``.weight`` (state-dict keys ``adapter.linear_in.weight`` etc., the
    names Megatron Bridge uses)."""

    def __init__(self, tensor: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(tensor)


class LoRAAdapter(nn.Module):
    """``scale * B A x`` laid out like its base linear (see the module docstring)."""

    def __init__(self, layout: LinearLayout, dim: int, alpha: float, *, dropout: float = 0.0,
                 dropout_position: str = "pre", a_init: str = "xavier", b_init: str = "zero",
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None, expert_allreduce: bool = True):
        super().__init__()
        self.layout = layout
        self.dim = dim
        self.alpha = alpha
        self.scale = alpha / dim
        self.dropout = dropout
        self.dropout_position = dropout_position
        generator = generator or torch.Generator().manual_seed(0)
        full_a = init_full(a_init, (dim, layout.in_features), generator)
        full_b = init_full(b_init, (layout.out_features, dim), generator)
        self.linear_in = _Weight(self.shard("linear_in.weight", full_a).to(device, dtype))
        self.linear_out = _Weight(self.shard("linear_out.weight", full_b).to(device, dtype))
        self._mark(expert_allreduce)

    # ------------------------------------------------------------------ sharding

    def sharded_dims(self) -> dict[str, tuple[int, bool]]:
        """Parameter name -> (sharded dimension, gated row layout) for TP-sharded parameters."""
        if self.layout.parallel == "column":
            return {"linear_out.weight": (0, self.layout.gated)}
        if self.layout.parallel == "row":
            return {"linear_in.weight": (1, False)}
        return {}

    def shard(self, name: str, full: torch.Tensor) -> torch.Tensor:
        """This rank's part of the full tensor for parameter ``name``."""
        spec = self.sharded_dims().get(name)
        size, rank = self.layout.tp_size, self.layout.tp_rank
        if spec is None or size == 1:
            return full.clone()
        dim, gated = spec
        if dim == 0:
            return shard_rows(full, rank, size, gated).clone()
        return full.chunk(size, dim=dim)[rank].clone()

    def unshard(self, name: str, shards: list[torch.Tensor]) -> torch.Tensor:
        """Every rank's part (in rank order) -> the full tensor for parameter ``name``."""
        spec = self.sharded_dims().get(name)
        if spec is None:
            return shards[0]
        dim, gated = spec
        return unshard_rows(shards, gated) if dim == 0 else torch.cat(shards, dim=dim)

    def _mark(self, expert_allreduce: bool) -> None:
        """megatron's attributes: which params are TP-sharded (grad-norm dedup, checkpoints) and
        which belong to experts (reduced over the expert data-parallel group)."""
        sharded = self.sharded_dims()
        for name, param in self.named_parameters():
            if name in sharded and self.layout.tp_size > 1:
                set_tensor_model_parallel_attributes(param, True, sharded[name][0], 1)
            param.allreduce = expert_allreduce

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor, gather_output: bool = False) -> torch.Tensor:
        if self.layout.parallel == "row":
            return self._row(x)
        return self._column(x, gather_output)

    def _column(self, x, gather_output):
        layout, group = self.layout, self.layout.tp_group
        parallel = layout.tp_size > 1 and layout.parallel == "column"
        a, b = self.linear_in.weight, self.linear_out.weight
        if parallel and layout.explicit_comm:
            a = copy_to_tensor_model_parallel_region(a, group=group)
        elif parallel and layout.sequence_parallel:
            x = gather_from_sequence_parallel_region(x, tensor_parallel_output_grad=False,
                                                     group=group)
        h = compute.down(self._dropout(x, "pre", sharded=False), a)
        if parallel and not layout.explicit_comm:
            h = copy_to_tensor_model_parallel_region(h, group=group)
        y = self._dropout(compute.up(h, b, self.scale), "post", sharded=parallel)
        if parallel and gather_output:
            y = gather_from_tensor_model_parallel_region(y, group=group)
        return y

    def _row(self, x):
        layout, group = self.layout, self.layout.tp_group
        parallel = layout.tp_size > 1
        a, b = self.linear_in.weight, self.linear_out.weight
        if parallel and not layout.input_is_parallel and not layout.explicit_comm:
            x = scatter_to_tensor_model_parallel_region(x, group=group)
        h = compute.down(self._dropout(x, "pre", sharded=parallel), a)
        if parallel and layout.explicit_comm:  # partial output, summed by the dispatcher
            b = copy_to_tensor_model_parallel_region(b, group=group)
            return self._dropout(compute.up(h, b, self.scale), "post", sharded=False)
        if parallel:
            h = reduce_from_tensor_model_parallel_region(h, group=group)
        y = compute.up(h, b, self.scale)
        split = parallel and layout.sequence_parallel
        if split:
            y = scatter_to_sequence_parallel_region(y, group=group)
        return self._dropout(y, "post", sharded=split)

    def _dropout(self, t: torch.Tensor, position: str, sharded: bool) -> torch.Tensor:
        """Dropout at ``position``; tensors that differ between TP ranks draw from megatron's
        model-parallel RNG stream, replicated ones from the default stream (same mask)."""
        if position != self.dropout_position or self.dropout == 0.0 or not self.training:
            return t
        if sharded:
            with get_cuda_rng_tracker().fork():
                return F.dropout(t, self.dropout, True)
        return F.dropout(t, self.dropout, True)

    def delta_weight(self) -> torch.Tensor:
        """This rank's block of ``scale * B @ A`` in float32 (same block as the base weight)."""
        return compute.delta_weight(self.linear_in.weight, self.linear_out.weight, self.scale)


class DoRAAdapter(LoRAAdapter):
    """LoRA plus a magnitude per output feature (DoRA, Liu et al. 2024).

    ``W' = m * (W + s B A) / ||W + s B A||`` with the norm taken over the input dimension of each
    output row (megatron's [out, in]) and detached from the graph (paper section 4.3). For a
    row-parallel base each rank holds only some input columns, so the squared norms are
    all-reduced over the TP group; a column-parallel base holds whole rows and needs nothing.
    """

    def __init__(self, layout: LinearLayout, dim: int, alpha: float, base_weight: torch.Tensor,
                 **kwargs):
        super().__init__(layout, dim, alpha, **kwargs)
        dtype = self.linear_in.weight.dtype
        self.weight_magnitude = nn.Parameter(self.weight_norm(base_weight).to(dtype))
        if layout.parallel == "column" and layout.tp_size > 1:
            set_tensor_model_parallel_attributes(self.weight_magnitude, True, 0, 1)
        self.weight_magnitude.allreduce = kwargs.get("expert_allreduce", True)

    def sharded_dims(self) -> dict[str, tuple[int, bool]]:
        dims = super().sharded_dims()
        if self.layout.parallel == "column":
            dims["weight_magnitude"] = (0, self.layout.gated)
        return dims

    @torch.no_grad()
    def weight_norm(self, base_weight: torch.Tensor) -> torch.Tensor:
        """float32 ``||W + s B A||`` per local output row (detached)."""
        combined = base_weight.float() + self.delta_weight()
        squares = combined.square().sum(dim=1)
        if self.layout.parallel == "row" and self.layout.tp_size > 1:
            torch.distributed.all_reduce(squares, group=self.layout.tp_group)
        return squares.sqrt()

    def magnitude(self) -> torch.Tensor:
        """m for the forward; when the row-parallel output differs per rank (sequence-parallel
        slices, expert partial sums) m's gradient is partial and is all-reduced."""
        layout = self.layout
        if (layout.parallel == "row" and layout.tp_size > 1
                and (layout.sequence_parallel or layout.explicit_comm)):
            return copy_to_tensor_model_parallel_region(self.weight_magnitude, group=layout.tp_group)
        return self.weight_magnitude
