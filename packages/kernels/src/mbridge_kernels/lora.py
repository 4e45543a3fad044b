"""Fused LoRA linear: ``y = x W^T (+ bias) + scale * dropout(x) A^T B^T`` with W frozen.

Why an autograd function: the composition autograd builds from plain ops makes extra passes
over the big tensors (a dropped copy of x and its mask, a delta the size of y added in a
second pass, separate passes over dY). Here the base GEMMs stay cuBLAS and everything else
rides on them:

* forward: ``xa = dropout(x) A^T`` (Triton: dropout applied while x is read, no mask stored,
  only the seed); ``y = addmm(bias, xa, B^T, alpha=scale)``; ``y.addmm_(x, W^T)`` (cuBLAS
  beta=1: the base GEMM accumulates onto the low-rank term, so reading y back rides in its
  epilogue). Saved: x, xa [N, r], the seed.
* backward: ``dX = dY W`` (cuBLAS), ``g = scale * dY B``, ``dB = scale * dY^T xa``; then one
  Triton pass over x and dX gives ``dA = g^T dropout(x)`` and adds ``(g A) * mask / (1 - p)``
  into dX in place, the mask regenerated from the seed. Without dropout both are cuBLAS:
  ``dA = g^T x`` and ``dX = (g A).addmm_(dY, W)`` (the base GEMM accumulating onto the
  low-rank term, as in forward). No dW is ever computed; a frozen bias gets none.

Layouts (megatron-core's fused linears with one adapter per projection): ``"qkv"`` - A stacks
the q, k, v adapters' A ([3r, in]) and B's rows follow linear_qkv's interleaved order (per
query group: its q heads, then k, then v; needs ``query_groups`` and ``head_dim``); ``"gated"``
- A stacks the gate and up adapters' A ([2r, in]) and B's first half rows are the gate's, the
second half the up projection's (a rank's [gate_r; up_r] shard). mbridge-peft's own adapters
are one LoRA over the whole fused weight (``layout=None``).
"""

from __future__ import annotations

import functools

import torch

from . import lora_reference

BACKENDS = ("auto", "triton", "reference")
LAYOUTS = (None, "qkv", "gated")

kernel_policy = {"down": "dropout", "dx_da": "dropout"}
"""When the Triton kernels run instead of cuBLAS on the triton backend: "dropout" (only with
dropout, where cuBLAS cannot fuse the mask) or "always" (the benchmark measures both)."""


def resolve_backend(backend: str, device: torch.device) -> str:
    """"triton" on CUDA (or a CPU under TRITON_INTERPRET=1 when asked for), else "reference"."""
    from .token_loss import _triton_usable

    if backend not in BACKENDS:
        raise ValueError(f"lora_linear: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and _triton_usable(device) else "reference"
    if backend == "triton" and not _triton_usable(device):
        raise RuntimeError("lora_linear: the triton backend needs a CUDA tensor "
                           "(or TRITON_INTERPRET=1 for CPU tensors)")
    return backend


@functools.lru_cache(maxsize=64)
def _row_groups_cached(layout, out_features, query_groups, head_dim, device):
    if layout == "gated":
        if out_features % 2:
            raise ValueError(f"lora_linear: a gated layout needs an even output size, got "
                             f"{out_features}")
        return torch.arange(out_features, device=device) >= out_features // 2
    if not query_groups or not head_dim:
        raise ValueError("lora_linear: layout='qkv' needs query_groups and head_dim")
    per_group, rem = divmod(out_features, query_groups)
    q_rows = per_group - 2 * head_dim
    if rem or q_rows <= 0 or q_rows % head_dim:
        raise ValueError(f"lora_linear: {out_features} qkv rows do not split into {query_groups} "
                         f"query groups of (q heads + k + v) x head_dim {head_dim}")
    inner = torch.arange(per_group, device=device)
    block = (inner >= q_rows).long() + (inner >= q_rows + head_dim).long()
    return block.repeat(query_groups)


def row_groups(layout: str | None, out_features: int, *, query_groups: int | None = None,
               head_dim: int | None = None, device=None) -> torch.Tensor | None:
    """Adapter block (0..G-1) of each output row for ``layout``; None for the dense layout."""
    if layout not in LAYOUTS:
        raise ValueError(f"lora_linear: layout must be one of {LAYOUTS}, got {layout!r}")
    if layout is None:
        return None
    return _row_groups_cached(layout, out_features, query_groups, head_dim,
                              torch.device(device or "cpu")).long()


def block_b(lora_b: torch.Tensor, groups: torch.Tensor | None, count: int) -> torch.Tensor:
    """B as one [out, G*r] matrix, zero outside each row's block (differentiable in B)."""
    if groups is None:
        return lora_b
    onehot = torch.nn.functional.one_hot(groups, count).to(lora_b.dtype)  # [out, G]
    return (onehot.unsqueeze(-1) * lora_b.unsqueeze(1)).reshape(lora_b.shape[0], -1)


def _seed_tensor(seed, generator, device) -> torch.Tensor:
    if isinstance(seed, torch.Tensor):
        return seed.reshape(1).to(device=device, dtype=torch.int64)
    if seed is not None:
        return torch.tensor([int(seed) & 0x7FFFFFFF], dtype=torch.int64, device=device)
    return torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device,
                         dtype=torch.int64)


def dropout_mask(seed, shape, p: float, device=None) -> torch.Tensor:
    """The keep mask (bool, ``shape`` = x's) the triton backend draws for ``seed``."""
    from . import _triton_lora

    device = torch.device(device or "cpu")
    k = shape[-1]
    n = 1
    for d in shape[:-1]:
        n *= d
    return _triton_lora.dropout_mask(_seed_tensor(seed, None, device), (n, k), p,
                                     device).reshape(shape)


class _LoRALinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, a, b, scale, p, seed):
        from . import _triton_lora

        if p > 0.0 or kernel_policy["down"] == "always":
            xa = _triton_lora.down(x, a, p, seed)
        else:
            xa = x @ a.t()
        # The low-rank term first, then the base GEMM accumulates onto it (beta=1): reading y
        # back happens in the big GEMM's epilogue, hidden under its math, not in a pass of its own.
        if bias is not None:
            y = torch.addmm(bias, xa, b.t(), alpha=scale)
        else:
            y = torch.addmm(x.new_empty(()), xa, b.t(), beta=0, alpha=scale)
        y.addmm_(x, weight.t())
        keep_x = ctx.needs_input_grad[3] or (ctx.needs_input_grad[0] and (
            p > 0.0 or kernel_policy["dx_da"] == "always"))
        ctx.save_for_backward(x if keep_x else None,
                              xa if ctx.needs_input_grad[4] else None,
                              weight if ctx.needs_input_grad[0] else None, a, b, seed)
        ctx.scale, ctx.p = scale, p
        return y

    @staticmethod
    def backward(ctx, dy):
        from . import _triton_lora

        x, xa, weight, a, b, seed = ctx.saved_tensors
        scale, p = ctx.scale, ctx.p
        want_x, _, want_bias, want_a, want_b = ctx.needs_input_grad[:5]
        dy = dy.contiguous()
        dx = da = db = None
        if want_b:
            db = torch.mm(dy.t(), xa).mul_(scale)
        g = torch.mm(dy, b).mul_(scale) if want_x or want_a else None
        if p > 0.0 or kernel_policy["dx_da"] == "always":
            dx = dy @ weight if want_x else None
            if g is not None:
                # One pass over x (mask regenerated) and dX; dA comes out of it too.
                da32 = _triton_lora.dx_da(x, g, a, dx, p, seed)
                da = da32.to(a.dtype) if want_a else None
        else:
            if want_a:
                da = torch.mm(g.t(), x)
            if want_x:  # as in forward: the big GEMM accumulates onto the low-rank term
                dx = torch.mm(g, a).addmm_(dy, weight)
        dbias = dy.sum(0) if want_bias else None
        return dx, None, dbias, da, db, None, None, None


def lora_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float,
                dropout_p: float = 0.0, *, backend: str = "auto",
                seed: int | torch.Tensor | None = None,
                generator: torch.Generator | None = None, layout: str | None = None,
                query_groups: int | None = None, head_dim: int | None = None) -> torch.Tensor:
    """``x W^T (+ bias) + scale * dropout(x) A^T B^T`` for x [..., in], W [out, in] (frozen),
    A [G*r, in], B [out, r] (G = 1, or 3 / 2 blocks for ``layout`` "qkv" / "gated").

    Dropout (``dropout_p > 0``) drops elements of the adapter's input only. Its mask comes from
    ``seed`` (int or one-element tensor) or, when None, a seed drawn from ``generator`` (torch's
    default RNG for x's device when None: megatron's RNG tracker forks apply). The triton and
    reference backends draw different masks for the same seed (`dropout_mask` gives the
    triton one). backend: "auto" = Triton on CUDA, the plain-PyTorch reference elsewhere.
    """
    chosen = resolve_backend(backend, x.device)
    _check(x, weight, bias, lora_a, lora_b, dropout_p)
    rank = lora_b.shape[1]
    count = lora_a.shape[0] // rank
    expected = {None: 1, "qkv": 3, "gated": 2}.get(layout, 1)
    groups = row_groups(layout, weight.shape[0], query_groups=query_groups, head_dim=head_dim,
                        device=x.device)
    if lora_a.shape[0] != expected * rank:
        raise ValueError(f"lora_linear: lora_a has {lora_a.shape[0]} rows; layout {layout!r} "
                         f"with lora_b's rank {rank} needs {expected * rank}")
    p = float(dropout_p)
    if chosen == "reference":
        gen = generator
        if p > 0.0 and seed is not None:
            gen = torch.Generator(device=x.device).manual_seed(
                int(seed.item() if isinstance(seed, torch.Tensor) else seed))
        return lora_reference.lora_linear_reference(x, weight, bias, lora_a, lora_b, scale, p,
                                                    generator=gen, row_groups=groups)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    seed_t = _seed_tensor(seed, generator, x.device) if p > 0.0 else None
    y = _LoRALinear.apply(x2, weight, bias, lora_a, block_b(lora_b, groups, count),
                          float(scale), p, seed_t)
    return y.reshape(*lead, weight.shape[0])


def _check(x, weight, bias, a, b, p) -> None:
    """One line per bad argument, before any kernel sees it."""
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"lora_linear: x {tuple(x.shape)} does not match weight "
                         f"{tuple(weight.shape)} ([out, in])")
    if weight.requires_grad:
        raise ValueError("lora_linear: weight must be frozen (requires_grad=False); the fused op "
                         "computes no weight gradient")
    if a.dim() != 2 or a.shape[1] != weight.shape[1]:
        raise ValueError(f"lora_linear: lora_a {tuple(a.shape)} must be [G*r, {weight.shape[1]}]")
    if b.dim() != 2 or b.shape[0] != weight.shape[0] or a.shape[0] % b.shape[1]:
        raise ValueError(f"lora_linear: lora_b {tuple(b.shape)} must be [{weight.shape[0]}, r] "
                         f"with r dividing lora_a's {a.shape[0]} rows")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"lora_linear: bias {tuple(bias.shape)} must be [{weight.shape[0]}]")
    for name, t in (("weight", weight), ("bias", bias), ("lora_a", a), ("lora_b", b)):
        if t is not None and t.dtype != x.dtype:
            raise ValueError(f"lora_linear: {name} is {t.dtype}, x is {x.dtype} (one dtype)")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"lora_linear: dropout_p must be in [0, 1), got {p}")
