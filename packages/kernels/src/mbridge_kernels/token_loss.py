"""Fused masked token loss: one pass computes the loss sum, the token count and the gradient.

``token_loss_sum(logits, labels, loss_mask)`` returns ``(loss_sum, num_tokens)`` as float32
0-dim tensors without a host sync; divide on the device (``loss_sum / num_tokens``) or reduce
across ranks first. Semantics (ignore-index, mask weights, label smoothing as in
``torch.nn.functional.cross_entropy``, PaLM's z-loss ``z * logsumexp**2`` per counted token) are
stated in :mod:`mbridge_kernels.reference`, which is also the fallback backend.

The forward already writes d(loss_sum)/d(logits); the backward only scales it by the incoming
gradient (on the GPU a no-op when that is 1, read on the device). With
``inplace_backward=True`` that gradient overwrites the logits buffer, so no second logits-sized
tensor exists: only allowed when nothing needs the logits afterwards (autograd's version
counter raises if a saved tensor aliases them) and the logits returned to the caller will then
hold the gradient.
"""

from __future__ import annotations

import torch

from . import reference

BACKENDS = ("auto", "triton", "cuda", "cpp", "reference")


def _triton_usable(device: torch.device) -> bool:
    import os

    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that ``backend`` ("auto" or explicit) means for tensors on ``device``."""
    from . import _extension

    if backend not in BACKENDS:
        raise ValueError(f"token_loss_sum: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda":
            if _triton_usable(device):
                return "triton"
            return "cuda" if _extension.has_cuda_kernel() else "reference"
        return "cpp" if device.type == "cpu" and _extension.available() else "reference"
    if backend == "triton" and not _triton_usable(device):
        raise RuntimeError("token_loss_sum: the triton backend needs a CUDA tensor "
                           "(or TRITON_INTERPRET=1 for CPU tensors)")
    if backend == "cuda" and (device.type != "cuda" or not _extension.has_cuda_kernel()):
        raise RuntimeError("token_loss_sum: the cuda backend needs a CUDA tensor and the "
                           "extension built with nvcc")
    if backend == "cpp" and (device.type != "cpu" or not _extension.load()):
        raise RuntimeError("token_loss_sum: the cpp backend runs on CPU tensors only")
    return backend


def kernel_forward(backend: str):
    """The ``loss_forward(logits, labels, weights, grad, ...)`` function of a fused backend."""
    if backend == "triton":
        from . import _triton_loss

        return _triton_loss.loss_forward
    if backend == "reference":
        return reference.loss_forward
    from . import _extension

    return _extension.loss_forward


def scale_grad_(grad: torch.Tensor, grad_output: torch.Tensor, backend: str) -> torch.Tensor:
    """``grad *= grad_output`` in place, skipping the pass on the GPU when it is 1."""
    if backend == "triton" and grad.is_contiguous():
        from . import _triton_loss

        return _triton_loss.scale_(grad, grad_output.to(torch.float32))
    return grad.mul_(grad_output.to(grad.dtype))


def prepare(labels: torch.Tensor, loss_mask: torch.Tensor | None, ignore_index: int
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(labels int64 [N], weights float32 [N] or None, num_tokens) for the kernels."""
    labels = labels.reshape(-1).to(torch.int64).contiguous()
    weights = None if loss_mask is None else loss_mask.reshape(-1).to(torch.float32).contiguous()
    counted = labels != ignore_index
    if weights is None:
        num_tokens = counted.sum(dtype=torch.float32)
    else:
        num_tokens = torch.where(counted, weights, 0.0).sum()
    return labels, weights, num_tokens


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, weights, ignore_index, label_smoothing, z_loss_weight,
                inplace, backend, block_size):
        vocab = logits.shape[-1]
        x = logits.detach().reshape(-1, vocab)
        if x.stride(-1) != 1:
            x = x.contiguous()
        if ctx.needs_input_grad[0]:
            grad = x if inplace and x.data_ptr() == logits.data_ptr() else torch.empty_like(x)
        else:
            grad = None
        rows = kernel_forward(backend)(
            x, labels, weights, grad, ignore_index=ignore_index,
            label_smoothing=label_smoothing, z_loss_weight=z_loss_weight, block_size=block_size)
        if grad is not None and grad is x:
            # The kernels write raw memory; tell autograd the logits changed.
            torch.autograd.graph.increment_version(logits)
        ctx.grad = grad
        ctx.shape = logits.shape
        ctx.backend = backend
        return rows.sum()

    @staticmethod
    def backward(ctx, grad_output):
        grad, ctx.grad = ctx.grad, None
        grad = scale_grad_(grad, grad_output, ctx.backend).view(ctx.shape)
        return grad, None, None, None, None, None, None, None, None


def token_loss_sum(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss_weight: float = 0.0,
    inplace_backward: bool = False,
    backend: str = "auto",
    block_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the per-token loss over counted tokens, and their count (both fp32 0-dim).

    logits: [..., V] in bf16/fp16/fp32 (fp32 accumulation); labels: [...] integer;
    loss_mask: [...] 0/1 (or fractional weights) or None. Labels outside [0, V) other than
    ``ignore_index`` are undefined for the fused backends (they count a zero target logit).
    backend: "auto" = Triton on CUDA, the C++ extension on CPU, else the reference.
    ``block_size`` forces the Triton tile width (tests use it to get ragged tails).
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"token_loss_sum: labels {tuple(labels.shape)} do not match logits "
                         f"{tuple(logits.shape)} without the vocabulary dimension")
    if loss_mask is not None and loss_mask.shape != labels.shape:
        raise ValueError(f"token_loss_sum: loss_mask {tuple(loss_mask.shape)} does not match "
                         f"labels {tuple(labels.shape)}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"token_loss_sum: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    chosen = resolve_backend(backend, logits.device)
    if chosen == "reference":
        return reference.token_loss_sum_reference(
            logits, labels, loss_mask, ignore_index=ignore_index,
            label_smoothing=label_smoothing, z_loss_weight=z_loss_weight)
    labels_, weights, num_tokens = prepare(labels, loss_mask, ignore_index)
    inplace = inplace_backward and logits.is_contiguous()
    loss_sum = _FusedLoss.apply(logits, labels_, weights, ignore_index, float(label_smoothing),
                                float(z_loss_weight), inplace, chosen, block_size)
    return loss_sum, num_tokens
