"""Triton kernels of the fused masked token loss.

One program per token row: a first pass over the row keeps an online max / sum-exp (fp32) and
the sum of the logits (label smoothing); the second pass writes the gradient of the row's
weighted loss, either into a separate buffer or over the logits themselves. TRITON_INTERPRET=1
runs them on the CPU through Triton's interpreter; it must be set before triton is first
imported (triton.language builds its own helpers at import), e.g. before importing megatron.
"""

from __future__ import annotations

import functools

import torch

try:  # module-level on purpose: Triton's interpreter patches the `tl` it finds in the kernels'
    # globals (a `tl` imported inside build_kernels is invisible to it).
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - platforms without triton use the other backends
    triton = tl = None

# Heuristic launch parameters (no autotuning: autotune re-runs the kernel, which would corrupt
# the logits when the gradient is written in place).
_MAX_BLOCK = 16384


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def launch_config(vocab: int, block_size: int | None = None) -> tuple[int, int]:
    """(BLOCK, num_warps) for a row of ``vocab`` logits."""
    block = block_size or min(_MAX_BLOCK, _next_pow2(vocab))
    block = max(16, _next_pow2(block))
    num_warps = 4 if block <= 2048 else 8 if block <= 8192 else 16
    return block, num_warps


@functools.cache
def _kernels():
    return build_kernels()


def build_kernels():
    """(loss_fwd_kernel, scale_kernel), interpreted when TRITON_INTERPRET=1 is set now."""

    @triton.jit
    def loss_fwd_kernel(
        logits_ptr, logits_stride,
        grad_ptr, grad_stride,
        labels_ptr, mask_ptr, loss_ptr,
        N, V, ignore_index, smoothing, z_weight,
        HAS_MASK: tl.constexpr, WRITE_GRAD: tl.constexpr, BLOCK: tl.constexpr,
    ):
        # Persistent: a few programs per SM walk the rows, so the rows in flight (one per
        # program) fit in L2 and pass 2 re-reads its row from L2 instead of HBM.
        for r in range(tl.program_id(0), N, tl.num_programs(0)):
            row = tl.cast(r, tl.int64)
            row_ptr = logits_ptr + row * logits_stride
            label = tl.load(labels_ptr + row).to(tl.int64)
            if HAS_MASK:
                w = tl.load(mask_ptr + row).to(tl.float32)
            else:
                w = 1.0
            w = tl.where(label == ignore_index, 0.0, w)

            # Pass 1: online log-sum-exp (and the row sum, for label smoothing).
            offs = tl.arange(0, BLOCK)
            m = -float("inf")
            s = 0.0
            sx = 0.0
            for start in range(0, V, BLOCK):
                cols = start + offs
                x = tl.load(row_ptr + cols, mask=cols < V, other=-float("inf")).to(tl.float32)
                m_new = tl.maximum(m, tl.max(x, axis=0))
                s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
                m = m_new
                if smoothing != 0.0:
                    sx += tl.sum(tl.where(cols < V, x, 0.0), axis=0)
            lse = m + tl.log(s)
            in_row = (label >= 0) & (label < V)
            target = tl.load(row_ptr + label, mask=in_row, other=0.0).to(tl.float32)
            loss = lse - (1.0 - smoothing) * target - (smoothing / V) * sx + z_weight * lse * lse
            tl.store(loss_ptr + row, tl.where(w != 0.0, w * loss, 0.0))

            # Pass 2: d(w * loss)/dx = w * (softmax * (1 + 2 z lse) - (1 - eps) onehot - eps / V).
            if WRITE_GRAD:
                out_ptr = grad_ptr + row * grad_stride
                coef = w * (1.0 + 2.0 * z_weight * lse)
                shift = w * smoothing / V
                hit = w * (1.0 - smoothing)
                # Backwards: the blocks pass 1 read last are the likeliest still in L2.
                last = ((V - 1) // BLOCK) * BLOCK
                for step in range(0, V, BLOCK):
                    cols = (last - step) + offs
                    x = tl.load(row_ptr + cols, mask=cols < V, other=0.0).to(tl.float32)
                    g = tl.exp(x - lse) * coef - shift - tl.where(cols == label, hit, 0.0)
                    g = tl.where(w != 0.0, g, 0.0)
                    tl.store(out_ptr + cols, g.to(out_ptr.dtype.element_ty), mask=cols < V)

    @triton.jit
    def scale_kernel(ptr, scale_ptr, n, BLOCK: tl.constexpr):
        # Multiplies in place by a device scalar; returns at once when it is 1 (the usual
        # `loss_sum.backward()`), so that case costs no pass over the buffer and no host sync.
        # A persistent grid walks the blocks, so the scale-is-1 case is a few hundred programs
        # that exit, not one per block.
        scale = tl.load(scale_ptr).to(tl.float32)
        if scale != 1.0:
            for b in range(tl.program_id(0), tl.cdiv(n, BLOCK), tl.num_programs(0)):
                offs = tl.cast(b, tl.int64) * BLOCK + tl.arange(0, BLOCK)
                x = tl.load(ptr + offs, mask=offs < n).to(tl.float32)
                tl.store(ptr + offs, (x * scale).to(ptr.dtype.element_ty), mask=offs < n)

    return loss_fwd_kernel, scale_kernel


def loss_forward(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None,
                 grad: torch.Tensor | None, *, ignore_index: int, label_smoothing: float,
                 z_loss_weight: float, block_size: int | None = None,
                 num_warps_override: int | None = None,
                 programs_override: int | None = None) -> torch.Tensor:
    """Per-row weighted loss (fp32 [N]); writes d(sum loss)/d(logits) into ``grad`` if given.

    ``logits`` [N, V] with unit stride along V; ``grad`` may be ``logits`` itself (in place).
    """
    fwd, _ = _kernels()
    n, vocab = logits.shape
    loss = torch.empty(n, dtype=torch.float32, device=logits.device)
    if n == 0:
        return loss
    block, num_warps = launch_config(vocab, block_size)
    num_warps = num_warps_override or num_warps
    programs = min(n, programs_override or _programs(logits.device, num_warps))
    fwd[(programs,)](
        logits, logits.stride(0),
        grad if grad is not None else logits, grad.stride(0) if grad is not None else 0,
        labels, weights if weights is not None else labels, loss,
        n, vocab, ignore_index, float(label_smoothing), float(z_loss_weight),
        HAS_MASK=weights is not None, WRITE_GRAD=grad is not None, BLOCK=block,
        num_warps=num_warps,
    )
    return loss


def _programs(device: torch.device, num_warps: int) -> int:
    """Programs of the persistent grid: as many as the SMs hold at once (64 warps each), so no
    second wave. Under the interpreter: 4, so tests walk several rows each."""
    if device.type != "cuda":
        return 4
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return sms * max(1, 64 // num_warps)


def scale_(buf: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``buf *= scale`` for a contiguous ``buf`` and a one-element device tensor ``scale``."""
    _, kernel = _kernels()
    n = buf.numel()
    block = 4096
    if n:
        programs = min(triton_cdiv(n, block), _programs(buf.device, num_warps=8))
        kernel[(programs,)](buf, scale.reshape(1), n, BLOCK=block, num_warps=8)
    return buf


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
