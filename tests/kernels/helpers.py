"""Shared strategies and checks for the kernels tests."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from mbridge_kernels.reference import token_loss_sum_reference

IGNORE = -100
# (atol, rtol) of a gradient element against the float64 oracle, by logits dtype: the kernels
# accumulate in fp32 and round the gradient once to the logits' dtype.
GRAD_TOL = {torch.float32: (2e-6, 1e-5), torch.float16: (1e-3, 2e-3), torch.bfloat16: (8e-3, 8e-3),
            torch.float64: (1e-6, 1e-6)}
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@st.composite
def loss_case(draw, max_tokens: int = 33, max_vocab: int = 300, min_vocab: int = 1):
    """Random logits/labels/mask with ignored labels, all-masked and unmasked rows."""
    tokens = draw(st.integers(1, max_tokens))
    vocab = draw(st.integers(min_vocab, max_vocab))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 8.0]))
    logits = torch.randn(tokens, vocab, generator=gen, dtype=torch.float64) * scale
    labels = torch.randint(0, vocab, (tokens,), generator=gen)
    labels[torch.rand(tokens, generator=gen) < draw(st.sampled_from([0.0, 0.3]))] = IGNORE
    mask_kind = draw(st.sampled_from(["none", "ones", "zeros", "binary", "weights"]))
    mask = {
        "none": None,
        "ones": torch.ones(tokens),
        "zeros": torch.zeros(tokens),
        "binary": (torch.rand(tokens, generator=gen) < 0.5).float(),
        "weights": torch.rand(tokens, generator=gen),
    }[mask_kind]
    return logits, labels, mask


def oracle(logits, labels, mask, grad_scale=1.0, **kwargs):
    """(loss_sum, num_tokens, grad) in float64 from the reference, on the same input values."""
    x = logits.detach().to(torch.float64).requires_grad_(True)
    loss, count = token_loss_sum_reference(x, labels, mask, compute_dtype=torch.float64,
                                              **kwargs)
    (loss * grad_scale).backward()
    return loss.double(), count.double(), x.grad


def assert_loss_close(loss, ref, num_tokens):
    assert loss.dtype == torch.float32 and loss.dim() == 0
    torch.testing.assert_close(loss.double(), ref, atol=1e-4 * (1 + float(num_tokens)), rtol=2e-5)
