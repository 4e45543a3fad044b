"""Fused output linear + masked token loss that never materialises the [tokens, vocab] logits.

The tokens are processed in chunks: for each chunk the logits ``h_c @ W.T`` are computed into
one reused buffer, the fused loss kernel overwrites them with d(loss)/d(logits) (online
log-sum-exp over the full vocabulary row, fp32 accumulation), and two matmuls turn that into
the chunk's ``grad_hidden`` rows and its contribution to ``grad_weight``. Gradients are thus
computed during the forward (6·N·H·V FLOPs in all, the minimum; no recompute) and the backward
only scales them by the incoming gradient. Extra memory: one chunk of logits
(``chunk_tokens x V``) besides the gradients themselves.

``grad_weight`` is accumulated chunk by chunk in the weight's dtype (bf16 weights: one bf16
rounding per chunk, as in the unfused path's bf16 GEMM outputs).
"""

from __future__ import annotations

import torch

from . import token_loss as mtl



def default_chunk_tokens(tokens: int) -> int:
    """Largest power of two <= tokens/25 (chunk logits <= 4% of the full logits), but at least
    1024 tokens: ``grad_weight += chunk_grad^T @ chunk_hidden`` reads and writes all of
    grad_weight once per chunk, and only chunks of ~1024+ tokens keep that matmul compute-bound
    on Hopper (H100: 42 ms with 1024-token chunks vs 63 ms with 256 at 8192 x 4096 x 128256)."""
    target = max(1024, tokens // 25)
    return min(max(tokens, 1), 1 << (target.bit_length() - 1))


class _FusedLinearLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, weights, ignore_index, label_smoothing,
                z_loss_weight, backend, chunk_tokens, block_size):
        h = hidden.detach().reshape(-1, hidden.shape[-1])
        w = weight.detach()
        n, vocab = h.shape[0], w.shape[0]
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_grad = want_h or want_w
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = torch.empty_like(w) if want_w else None
        rows = torch.empty(n, dtype=torch.float32, device=h.device)
        kernel = mtl.kernel_forward(backend)
        chunk = min(chunk_tokens, max(n, 1))
        buf = torch.empty(chunk, vocab, dtype=torch.result_type(h, w), device=h.device)
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            h_c = h[start:end]
            logits = torch.mm(h_c, w.t(), out=buf[: end - start])
            rows[start:end] = kernel(
                logits, labels[start:end], None if weights is None else weights[start:end],
                logits if want_grad else None, ignore_index=ignore_index,
                label_smoothing=label_smoothing, z_loss_weight=z_loss_weight,
                block_size=block_size)
            if grad_h is not None:
                torch.mm(logits, w, out=grad_h[start:end])
            if grad_w is not None:
                if start == 0:
                    torch.mm(logits.t(), h_c, out=grad_w)
                else:
                    grad_w.addmm_(logits.t(), h_c)
        if grad_w is not None and n == 0:
            grad_w.zero_()
        ctx.grads = (grad_h, grad_w)
        ctx.hidden_shape = hidden.shape
        ctx.backend = backend
        return rows.sum()

    @staticmethod
    def backward(ctx, grad_output):
        grad_h, grad_w = ctx.grads
        ctx.grads = None
        if grad_h is not None:
            grad_h = mtl.scale_grad_(grad_h, grad_output, ctx.backend).view(ctx.hidden_shape)
        if grad_w is not None:
            grad_w = mtl.scale_grad_(grad_w, grad_output, ctx.backend)
        return grad_h, grad_w, None, None, None, None, None, None, None, None


def linear_token_loss_sum(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss_weight: float = 0.0,
    backend: str = "auto",
    chunk_tokens: int | None = None,
    block_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``token_loss_sum(hidden @ weight.T, labels, loss_mask)`` without the logits tensor.

    hidden: [..., H]; weight: [V, H] (the output layer's weight, same dtype); returns
    ``(loss_sum, num_tokens)`` as fp32 0-dim tensors, differentiable w.r.t. hidden and weight.
    Loss semantics and backends as in :func:`mbridge_kernels.token_loss_sum`;
    ``chunk_tokens`` trades memory (one chunk of logits) for matmul efficiency.
    """
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(f"linear_token_loss_sum: labels {tuple(labels.shape)} do not match "
                         f"hidden {tuple(hidden.shape)} without the hidden dimension")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"linear_token_loss_sum: weight must be [vocab, {hidden.shape[-1]}],"
                         f" got {tuple(weight.shape)}")
    if weight.dtype != hidden.dtype:
        raise ValueError(f"linear_token_loss_sum: hidden is {hidden.dtype} but weight is "
                         f"{weight.dtype}")
    if loss_mask is not None and loss_mask.shape != labels.shape:
        raise ValueError(f"linear_token_loss_sum: loss_mask {tuple(loss_mask.shape)} does not "
                         f"match labels {tuple(labels.shape)}")
    chosen = mtl.resolve_backend(backend, hidden.device)
    labels_, weights, num_tokens = mtl.prepare(labels, loss_mask, ignore_index)
    n = labels_.numel()
    chunk = chunk_tokens or default_chunk_tokens(n)
    loss_sum = _FusedLinearLoss.apply(
        hidden, weight, labels_, weights, ignore_index, float(label_smoothing),
        float(z_loss_weight), chosen, chunk, block_size)
    return loss_sum, num_tokens


