"""The oracle's semantics: torch's cross_entropy (+ label smoothing, ignore_index) and PaLM's
z-loss; and the fp32 `reference.loss_forward` (the fallback kernel) against it."""

import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from helpers import IGNORE, loss_case, oracle
from mbridge_kernels import reference


@given(case=loss_case(), eps=st.sampled_from([0.0, 0.1, 1.0]))
def test_reference_is_torch_cross_entropy_summed(case, eps):
    logits, labels, _ = case
    loss, count = reference.token_loss_sum_reference(
        logits, labels, ignore_index=IGNORE, label_smoothing=eps, compute_dtype=torch.float64)
    expected = F.cross_entropy(logits, labels, ignore_index=IGNORE, label_smoothing=eps,
                               reduction="sum")
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-5)
    assert count == (labels != IGNORE).sum()


@given(case=loss_case(), z=st.sampled_from([1e-4, 0.5]))
def test_z_loss_adds_weighted_squared_logsumexp(case, z):
    logits, labels, mask = case
    plain, _ = reference.token_loss_sum_reference(logits, labels, mask,
                                                     compute_dtype=torch.float64)
    with_z, _ = reference.token_loss_sum_reference(logits, labels, mask, z_loss_weight=z,
                                                      compute_dtype=torch.float64)
    w = reference.token_weights(labels, mask, IGNORE, torch.float64)
    lse = torch.logsumexp(logits, dim=-1)
    torch.testing.assert_close((with_z - plain).double(), (z * w * lse**2).sum(), rtol=1e-5,
                               atol=1e-6)


def test_masked_rows_with_non_finite_logits_contribute_nothing():
    logits = torch.tensor([[0.0, 1.0], [float("inf"), float("nan")]], requires_grad=True)
    labels = torch.tensor([1, 0])
    loss, count = reference.token_loss_sum_reference(logits, labels, torch.tensor([1.0, 0.0]))
    loss.backward()
    assert torch.isfinite(loss) and count == 1
    assert torch.all(logits.grad[1] == 0)


@given(case=loss_case(), eps=st.sampled_from([0.0, 0.2]), z=st.sampled_from([0.0, 1e-3]))
def test_fallback_kernel_contract_matches_autograd_of_oracle(case, eps, z):
    logits, labels, mask = case
    grad = torch.empty_like(logits)
    rows = reference.loss_forward(logits, labels, mask, grad, ignore_index=IGNORE,
                                  label_smoothing=eps, z_loss_weight=z)
    ref_loss, _, ref_grad = oracle(logits, labels, mask, label_smoothing=eps, z_loss_weight=z)
    torch.testing.assert_close(rows.sum().double(), ref_loss, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
