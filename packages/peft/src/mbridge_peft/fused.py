"""LoRA layers through `mbridge_kernels.lora_linear`: base GEMM and adapter in one op per rank.

For megatron's Column/RowParallelLinear the base layer's own ``forward`` still runs (its input
copy / sequence gather, ``gather_output``, the row reduction, bias handling); only its local
``_forward_impl`` (the frozen GEMM) is swapped for the fused op on this rank's shards for the
duration of the call. That is exact for tensor parallelism because:

* column-parallel: each rank's ``x W_r^T + s (x A^T) B_r^T`` is its output slice; dX is the
  sum of the ranks' partials, which the base's own backward communication already reduces;
  A is replicated and its per-rank gradient is partial, so A passes megatron's copy-to-TP
  region (identity forward, all-reduce backward).
* row-parallel: ``sum_r (x_r W_r^T + s (x_r A_r^T) B^T) = x W^T + s (x A^T) B^T``, so the
  base's all-reduce / reduce-scatter of the partial outputs also sums the adapter's; B is
  replicated with a partial gradient and passes the copy-to-TP region.

Dropout (position "pre") draws its seed from torch's default RNG when the adapter input is the
same on every TP rank (column) and from megatron's model-parallel RNG when it is sharded (row).
Anything else (post dropout, TE layers, weights passed at call time, trainable base weights,
mixed dtypes, ``lora_backend = "off"``) takes the unfused path in `mbridge_peft.adapters`.
"""

from __future__ import annotations

import contextlib

import torch
from megatron.core.tensor_parallel import (ColumnParallelLinear, RowParallelLinear,
                                           get_cuda_rng_tracker)
from megatron.core.tensor_parallel.mappings import (copy_to_tensor_model_parallel_region,
                                                    gather_from_sequence_parallel_region)

from mbridge_peft import compute


def fusable(wrapper, args, kwargs) -> bool:
    """Whether this call of a LoRALinear can go through the fused op."""
    if compute.lora_backend == "off" or wrapper.merged:
        return False
    adapter, layout, base = wrapper.adapter, wrapper.layout, wrapper.to_wrap
    if layout.layernorm_input or type(base) not in (ColumnParallelLinear, RowParallelLinear,
                                                    torch.nn.Linear):
        return False
    if adapter.dropout > 0.0 and adapter.training and adapter.dropout_position != "pre":
        return False
    weight = getattr(base, "weight", None)
    if weight is None or weight.requires_grad or (args and args[0] is not None) or \
            kwargs.get("weight") is not None or getattr(base, "gtp_remat_size", 1) != 1:
        return False
    config = getattr(base, "config", None)
    if config is not None and getattr(config, "defer_embedding_wgrad_compute", False):
        return False
    a, b = adapter.linear_in.weight, adapter.linear_out.weight
    return a.dtype == b.dtype == weight.dtype and (base.bias is None or
                                                   base.bias.dtype == weight.dtype)


def forward(wrapper, x, *args, **kwargs):
    """The wrapped layer's output (and bias, for megatron layers) with the adapter fused in."""
    base = wrapper.to_wrap
    if isinstance(base, torch.nn.Linear):
        return _local(wrapper, x, base.weight, base.bias)

    def impl(input, weight, bias=None, gradient_accumulation_fusion=False,
             allreduce_dgrad=False, sequence_parallel=False, tp_group=None, **_):
        group = tp_group if tp_group is not None else wrapper.layout.tp_group
        if sequence_parallel:
            input = gather_from_sequence_parallel_region(input, tensor_parallel_output_grad=True,
                                                         group=group)
        elif allreduce_dgrad:
            input = copy_to_tensor_model_parallel_region(input, group=group)
        return _local(wrapper, input, weight, bias)

    base._forward_impl = impl
    try:
        return base(x, *args, **kwargs)
    finally:
        del base._forward_impl


def _local(wrapper, x, weight, bias):
    """This rank's ``x W^T (+ bias) + s dropout(x) A^T B^T``, replicated weights marked for
    their gradient all-reduce."""
    from mbridge_kernels import lora_linear

    adapter, layout = wrapper.adapter, wrapper.layout
    a, b = adapter.linear_in.weight, adapter.linear_out.weight
    parallel = layout.tp_size > 1
    if parallel and layout.parallel == "column":
        a = copy_to_tensor_model_parallel_region(a, group=layout.tp_group)
    elif parallel and layout.parallel == "row":
        b = copy_to_tensor_model_parallel_region(b, group=layout.tp_group)
    p = adapter.dropout if adapter.training else 0.0
    sharded = p > 0.0 and parallel and layout.parallel == "row"
    with get_cuda_rng_tracker().fork() if sharded else contextlib.nullcontext():
        return lora_linear(x, weight, bias, a, b, adapter.scale, p, backend=compute.lora_backend)
