"""Plain-PyTorch masked token loss: the fallback every fused path must match, and the test oracle.

Semantics (shared by every backend; see `token_loss_sum` for the public entry point).
For token i with logits x (V entries), label y and mask weight m_i:

* the token counts when ``m_i != 0`` and ``y != ignore_index``; its weight is ``w_i = m_i``
  (a 0/1 mask gives plain counting), otherwise ``w_i = 0``;
* ``lse = logsumexp(x)``;
* ``loss_i = lse - (1 - eps) * x[y] - (eps / V) * sum(x) + z * lse**2``, which is
  ``torch.nn.functional.cross_entropy(..., label_smoothing=eps)`` plus PaLM's z-loss;
* ``loss_sum = sum_i w_i * loss_i`` and ``num_tokens = sum_i w_i`` (float32 0-dim tensors).

Tokens with ``w_i = 0`` contribute exactly zero to the loss and to the gradient, even when
their logits are not finite.
"""

from __future__ import annotations

import torch


def token_weights(labels: torch.Tensor, loss_mask: torch.Tensor | None, ignore_index: int,
                  dtype: torch.dtype) -> torch.Tensor:
    """Per-token weight: the mask value, zeroed where the label is ``ignore_index``."""
    labels = labels.reshape(-1)
    if loss_mask is None:
        weights = torch.ones(labels.shape, dtype=dtype, device=labels.device)
    else:
        weights = loss_mask.reshape(-1).to(dtype)
    return torch.where(labels == ignore_index, torch.zeros_like(weights), weights)


def per_token_loss(x: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100,
                   label_smoothing: float = 0.0, z_loss_weight: float = 0.0,
                   vocab_size: int | None = None) -> torch.Tensor:
    """Unweighted loss of each row of ``x`` [N, V] (computed in ``x``'s dtype)."""
    vocab = x.shape[-1] if vocab_size is None else vocab_size
    lse = torch.logsumexp(x, dim=-1)
    valid = (labels != ignore_index) & (labels >= 0) & (labels < x.shape[-1])
    target = x.gather(-1, torch.where(valid, labels, 0).unsqueeze(-1)).squeeze(-1)
    target = torch.where(valid, target, torch.zeros_like(target))
    row_sum = x.sum(dim=-1) if label_smoothing else torch.zeros_like(lse)
    return loss_from_stats(lse, target, row_sum, vocab_size=vocab,
                           label_smoothing=label_smoothing, z_loss_weight=z_loss_weight)


def loss_from_stats(lse: torch.Tensor, target: torch.Tensor, row_sum: torch.Tensor, *,
                    vocab_size: int, label_smoothing: float, z_loss_weight: float) -> torch.Tensor:
    """Per-row loss from its log-sum-exp, target logit and (with smoothing) row sum."""
    return (lse - (1.0 - label_smoothing) * target - (label_smoothing / vocab_size) * row_sum
            + z_loss_weight * lse * lse)


def loss_gradient(x: torch.Tensor, local_labels: torch.Tensor, lse: torch.Tensor,
                  weights: torch.Tensor, *, vocab_size: int, label_smoothing: float,
                  z_loss_weight: float) -> torch.Tensor:
    """d(w_i * loss_i)/dx for the columns ``x`` [N, V_cols] holds (all of them, or one shard).

    ``local_labels`` index into those columns (out of range: the target lies elsewhere);
    ``lse`` is the full row's; rows with zero weight get exactly zero.
    """
    g = torch.exp(x - lse.unsqueeze(-1)) * (1.0 + 2.0 * z_loss_weight * lse).unsqueeze(-1)
    g -= label_smoothing / vocab_size
    hit = (local_labels >= 0) & (local_labels < x.shape[-1]) & (weights != 0)
    rows = torch.nonzero(hit).squeeze(-1)
    g[rows, local_labels[rows]] -= 1.0 - label_smoothing
    return torch.where(weights.unsqueeze(-1) != 0, g * weights.unsqueeze(-1), torch.zeros_like(g))


def token_loss_sum_reference(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss_weight: float = 0.0,
    compute_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss_sum, num_tokens) in plain PyTorch, differentiable through autograd.

    ``compute_dtype`` is float32 for the fallback and float64 for the oracle; the logits are
    upcast once, so this path costs a logits-sized temporary (it is not the fast path). The
    results are float32 (float64 when computing in float64).
    """
    vocab = logits.shape[-1]
    x = logits.reshape(-1, vocab).to(compute_dtype)
    labels = labels.reshape(-1).to(torch.int64)
    weights = token_weights(labels, loss_mask, ignore_index, compute_dtype)
    # Rows that do not count are zeroed first, so that non-finite values there cannot reach
    # the loss or (through 0 * nan in autograd) the gradient.
    x = torch.where(weights.unsqueeze(-1) != 0, x, torch.zeros_like(x))
    loss = per_token_loss(x, labels, ignore_index=ignore_index,
                          label_smoothing=label_smoothing, z_loss_weight=z_loss_weight)
    # where(), not a product: a masked row with non-finite logits must not poison the sum.
    loss_sum = torch.where(weights != 0, weights * loss, torch.zeros_like(loss)).sum()
    out = torch.promote_types(compute_dtype, torch.float32)
    return loss_sum.to(out), weights.sum().to(out)


def linear_token_loss_sum_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    *,
    compute_dtype: torch.dtype = torch.float32,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The unfused linear + loss: materialises the [tokens, vocab] logits (oracle only)."""
    h = hidden.reshape(-1, hidden.shape[-1]).to(compute_dtype)
    logits = h @ weight.to(compute_dtype).t()
    return token_loss_sum_reference(logits, labels, loss_mask, compute_dtype=compute_dtype,
                                       **kwargs)


def loss_forward(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None,
                 grad: torch.Tensor | None, *, ignore_index: int, label_smoothing: float,
                 z_loss_weight: float, block_size: int | None = None) -> torch.Tensor:
    """The fused kernels' contract in plain PyTorch (fp32): per-row weighted loss [N], and
    d(sum loss)/d(logits) written into ``grad`` (which may be ``logits``) when given."""
    del block_size
    x = logits.float()
    vocab = x.shape[-1]
    w = token_weights(labels, weights, ignore_index, torch.float32)
    lse = torch.logsumexp(x, dim=-1)
    loss = per_token_loss(x, labels, ignore_index=ignore_index, label_smoothing=label_smoothing,
                          z_loss_weight=z_loss_weight)
    if grad is not None:
        grad.copy_(loss_gradient(x, labels, lse, w, vocab_size=vocab,
                                 label_smoothing=label_smoothing, z_loss_weight=z_loss_weight))
    return torch.where(w != 0, w * loss, torch.zeros_like(loss))
