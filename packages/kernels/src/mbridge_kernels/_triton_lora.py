"""Triton kernels of the fused LoRA linear: what cuBLAS cannot fuse around the rank-r bottleneck.

* ``down``: ``xa = dropout(x) A^T`` in one read of x; the dropout keep mask is Philox
  ``tl.rand(seed, n * K + k) >= p``, so no mask is ever stored: the backward regenerates it.
* ``dx_da``: the backward's pass over x and dX at once: ``dA = g^T dropout(x)`` (per-split fp32
  partials, summed afterwards: deterministic, no atomics) and, in place,
  ``dX += (g A) * mask / (1 - p)`` with g = scale * dY B.
* ``dropout_mask``: materialises the same keep mask (tests and the reference use it).

The element offset ``n * K + k`` wraps at 2^32: tensors beyond 4G elements reuse mask bits.
TRITON_INTERPRET=1 runs them on the CPU (see `_triton_loss` for why ``tl`` is module level).
"""

from __future__ import annotations

import functools

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = tl = None

MAX_RANK_BLOCK = 128
"""Adapter ranks (times layout blocks) up to this run in one tile; wider ones are chunked."""


def _pow2(n: int, floor: int = 16) -> int:
    return max(floor, 1 << max(0, (n - 1).bit_length()))


if triton is not None:
    @triton.jit
    def keep_mask(seed, rows, cols, K, p):
        """The one definition of the dropout mask: forward, backward and dropout_mask agree."""
        return tl.rand(seed, (rows[:, None].to(tl.int64) * K + cols[None, :]).to(tl.int32)) >= p


@functools.cache
def _kernels():
    return build_kernels()


def build_kernels():
    @triton.jit
    def down_kernel(x_ptr, sxn, sxk, a_ptr, sar, sak, out_ptr, son, sor, seed_ptr,
                    N, K, R, p, keep_scale,
                    HAS_DROPOUT: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                    BR: tl.constexpr, PRECISION: tl.constexpr,
                    UPCAST: tl.constexpr):
        rows = tl.program_id(0) * BN + tl.arange(0, BN)
        rr = tl.program_id(1) * BR + tl.arange(0, BR)
        acc = tl.zeros((BN, BR), dtype=tl.float32)
        if HAS_DROPOUT:
            seed = tl.load(seed_ptr)
        else:
            seed = 0
        for k0 in range(0, K, BK):
            cols = k0 + tl.arange(0, BK)
            inside = (rows[:, None] < N) & (cols[None, :] < K)
            x = tl.load(x_ptr + rows[:, None].to(tl.int64) * sxn + cols[None, :] * sxk,
                        mask=inside, other=0.0)
            if HAS_DROPOUT:
                keep = keep_mask(seed, rows, cols, K, p)
                x = tl.where(keep, x.to(tl.float32) * keep_scale, 0.0).to(x_ptr.dtype.element_ty)
            a = tl.load(a_ptr + rr[None, :] * sar + cols[:, None] * sak,
                        mask=(rr[None, :] < R) & (cols[:, None] < K), other=0.0)
            if UPCAST:  # the interpreter's dot has no bf16/fp16 (the values are unchanged)
                x = x.to(tl.float32)
                a = a.to(tl.float32)
            acc = tl.dot(x, a, acc, input_precision=PRECISION)
        tl.store(out_ptr + rows[:, None].to(tl.int64) * son + rr[None, :] * sor,
                 acc.to(out_ptr.dtype.element_ty), mask=(rows[:, None] < N) & (rr[None, :] < R))

    @triton.jit
    def dx_da_kernel(x_ptr, sxn, sxk, g_ptr, sgn, sgr, a_ptr, sar, sak, dx_ptr, sdn, sdk,
                     da_ptr, seed_ptr, N, K, R, rows_per_split, p, keep_scale,
                     HAS_DROPOUT: tl.constexpr, WRITE_DX: tl.constexpr, BN: tl.constexpr,
                     BK: tl.constexpr, BR: tl.constexpr, PRECISION: tl.constexpr,
                    UPCAST: tl.constexpr):
        pid_k = tl.program_id(0)
        pid_s = tl.program_id(1)
        cols = pid_k * BK + tl.arange(0, BK)
        rr = tl.arange(0, BR)
        a = tl.load(a_ptr + rr[:, None] * sar + cols[None, :] * sak,
                    mask=(rr[:, None] < R) & (cols[None, :] < K), other=0.0)
        if UPCAST:
            a = a.to(tl.float32)
        acc = tl.zeros((BR, BK), dtype=tl.float32)
        if HAS_DROPOUT:
            seed = tl.load(seed_ptr)
        else:
            seed = 0
        start = pid_s * rows_per_split
        end = tl.minimum(N, start + rows_per_split)
        for n0 in range(start, end, BN):
            rows = n0 + tl.arange(0, BN)
            inside = (rows[:, None] < end) & (cols[None, :] < K)
            x = tl.load(x_ptr + rows[:, None].to(tl.int64) * sxn + cols[None, :] * sxk,
                        mask=inside, other=0.0)
            if HAS_DROPOUT:
                keep = keep_mask(seed, rows, cols, K, p)
                x = tl.where(keep, x.to(tl.float32) * keep_scale, 0.0).to(x_ptr.dtype.element_ty)
            g = tl.load(g_ptr + rows[:, None].to(tl.int64) * sgn + rr[None, :] * sgr,
                        mask=(rows[:, None] < end) & (rr[None, :] < R), other=0.0)
            if UPCAST:
                x = x.to(tl.float32)
                g = g.to(tl.float32)
            acc = tl.dot(tl.trans(g), x, acc, input_precision=PRECISION)
            if WRITE_DX:
                low = tl.dot(g, a, input_precision=PRECISION)
                if HAS_DROPOUT:
                    low = tl.where(keep, low * keep_scale, 0.0)
                ptrs = dx_ptr + rows[:, None].to(tl.int64) * sdn + cols[None, :] * sdk
                dx = tl.load(ptrs, mask=inside, other=0.0).to(tl.float32)
                tl.store(ptrs, (dx + low).to(dx_ptr.dtype.element_ty), mask=inside)
        tl.store(da_ptr + pid_s.to(tl.int64) * R * K + rr[:, None] * K + cols[None, :], acc,
                 mask=(rr[:, None] < R) & (cols[None, :] < K))

    @triton.jit
    def mask_kernel(out_ptr, seed_ptr, N, K, p, BN: tl.constexpr, BK: tl.constexpr):
        rows = tl.program_id(0) * BN + tl.arange(0, BN)
        cols = tl.program_id(1) * BK + tl.arange(0, BK)
        keep = keep_mask(tl.load(seed_ptr), rows, cols, K, p)
        tl.store(out_ptr + rows[:, None].to(tl.int64) * K + cols[None, :], keep.to(tl.int8),
                 mask=(rows[:, None] < N) & (cols[None, :] < K))

    return down_kernel, dx_da_kernel, mask_kernel


def _precision(dtype: torch.dtype, device: torch.device) -> str:
    return "ieee" if dtype == torch.float32 or _interpreted(device) else "tf32"


def _interpreted(device: torch.device) -> bool:
    return device.type != "cuda"


def down(x: torch.Tensor, a: torch.Tensor, p: float, seed: torch.Tensor | None) -> torch.Tensor:
    """``dropout(x) A^T`` for x [N, K], A [R, K] -> [N, R] in x's dtype (fp32 accumulation)."""
    kernel = _kernels()[0]
    n, k = x.shape
    r = a.shape[0]
    out = torch.empty(n, r, dtype=x.dtype, device=x.device)
    if n == 0:
        return out
    br = min(_pow2(r), MAX_RANK_BLOCK)
    if _interpreted(x.device):
        bn, bk = 16, 32
    else:  # rows per program: at least two programs per SM, so the reads of x fill HBM
        bn, bk = 64, (128 if br <= 64 else 64)
        while bn > 16 and triton.cdiv(n, bn) * triton.cdiv(r, br) < 2 * _sms(x.device):
            bn //= 2
    grid = (triton.cdiv(n, bn), triton.cdiv(r, br))
    dropout = p > 0.0
    kernel[grid](x, x.stride(0), x.stride(1), a, a.stride(0), a.stride(1),
                 out, out.stride(0), out.stride(1), seed if dropout else x,
                 n, k, r, float(p), 1.0 / (1.0 - p),
                 HAS_DROPOUT=dropout, BN=bn, BK=bk, BR=br,
                 PRECISION=_precision(x.dtype, x.device), UPCAST=_interpreted(x.device),
                 num_warps=4)
    return out


def dx_da(x: torch.Tensor, g: torch.Tensor, a: torch.Tensor, dx: torch.Tensor | None, p: float,
          seed: torch.Tensor | None, splits: int | None = None) -> torch.Tensor:
    """``g^T dropout(x)`` (fp32 [R, K]); adds ``(g A) * mask / (1 - p)`` into ``dx`` in place.

    x [N, K], g [N, R] (already scaled), A [R, K], dx [N, K] or None.
    """
    kernel = _kernels()[1]
    n, k = x.shape
    r = a.shape[0]
    if r > MAX_RANK_BLOCK:  # one launch per rank chunk: each adds its part of g A into dx
        parts = [dx_da(x, g[:, i:i + MAX_RANK_BLOCK], a[i:i + MAX_RANK_BLOCK], dx, p, seed,
                       splits) for i in range(0, r, MAX_RANK_BLOCK)]
        return torch.cat(parts, 0)
    br = _pow2(r)
    interp = _interpreted(x.device)
    bn, bk = (16, 32) if interp else (64, 64)
    kblocks = triton.cdiv(k, bk)
    if splits is None:
        splits = 2 if interp else max(1, min(triton.cdiv(n, bn),
                                             triton.cdiv(4 * _sms(x.device), kblocks)))
    rows_per_split = triton.cdiv(triton.cdiv(n, splits), bn) * bn
    splits = max(1, triton.cdiv(n, rows_per_split)) if n else 1
    partial = torch.zeros(splits, r, k, dtype=torch.float32, device=x.device)
    if n == 0:
        return partial[0]
    dropout = p > 0.0
    kernel[(kblocks, splits)](
        x, x.stride(0), x.stride(1), g, g.stride(0), g.stride(1), a, a.stride(0), a.stride(1),
        dx if dx is not None else x, dx.stride(0) if dx is not None else 0,
        dx.stride(1) if dx is not None else 0, partial, seed if dropout else x,
        n, k, r, rows_per_split, float(p), 1.0 / (1.0 - p),
        HAS_DROPOUT=dropout, WRITE_DX=dx is not None, BN=bn, BK=bk, BR=br,
        PRECISION=_precision(x.dtype, x.device), UPCAST=_interpreted(x.device), num_warps=4)
    return partial.sum(0) if splits > 1 else partial[0]


def dropout_mask(seed: torch.Tensor, shape: tuple[int, int], p: float,
                 device: torch.device) -> torch.Tensor:
    """The keep mask (bool [N, K]) the kernels use for ``seed`` (a one-element int64 tensor)."""
    kernel = _kernels()[2]
    n, k = shape
    out = torch.empty(n, k, dtype=torch.int8, device=device)
    if n and k:
        kernel[(triton.cdiv(n, 16), triton.cdiv(k, 32))](out, seed, n, k, float(p), BN=16, BK=32)
    return out.bool()


@functools.cache
def _sms_of(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _sms(device: torch.device) -> int:
    return _sms_of(device.index if device.index is not None else torch.cuda.current_device())
