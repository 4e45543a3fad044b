"""Fused linear + loss against the float64 oracle that materialises the logits."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from helpers import IGNORE
from mbridge_kernels import linear_token_loss_sum, linear_token_loss_sum_reference
from mbridge_kernels.linear_loss import default_chunk_tokens


def linear_case(seed, tokens, hidden, vocab, dtype):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(tokens, hidden, generator=gen).to(dtype)
    w = (torch.randn(vocab, hidden, generator=gen) / hidden**0.5).to(dtype)
    labels = torch.randint(0, vocab, (tokens,), generator=gen)
    labels[torch.rand(tokens, generator=gen) < 0.2] = IGNORE
    mask = (torch.rand(tokens, generator=gen) < 0.7).float()
    return h, w, labels, mask


def check(backend, seed, tokens, hidden, vocab, chunk, dtype, eps, z, block=None):
    h, w, labels, mask = linear_case(seed, tokens, hidden, vocab, dtype)
    kwargs = dict(ignore_index=IGNORE, label_smoothing=eps, z_loss_weight=z)
    h64, w64 = h.double().requires_grad_(True), w.double().requires_grad_(True)
    ref, ref_count = linear_token_loss_sum_reference(h64, w64, labels, mask,
                                                        compute_dtype=torch.float64, **kwargs)
    (ref * 0.5).backward()
    hh, ww = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    loss, count = linear_token_loss_sum(hh, ww, labels, mask, backend=backend,
                                           chunk_tokens=chunk, block_size=block, **kwargs)
    (loss * 0.5).backward()
    torch.testing.assert_close(count.double(), ref_count)
    if dtype == torch.float32:
        torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(hh.grad.double(), h64.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ww.grad.double(), w64.grad, rtol=1e-4, atol=1e-5)
    else:  # bf16 logits and bf16 gradient GEMM outputs, as in the unfused bf16 path
        torch.testing.assert_close(loss.double(), ref, rtol=1e-2, atol=2e-2 * (1 + tokens))
        scale = max(h64.grad.abs().max().item(), w64.grad.abs().max().item(), 1e-3)
        torch.testing.assert_close(hh.grad.double(), h64.grad, rtol=3e-2, atol=3e-2 * scale)
        torch.testing.assert_close(ww.grad.double(), w64.grad, rtol=3e-2, atol=3e-2 * scale)


shapes = dict(seed=st.integers(0, 2**31 - 1), tokens=st.integers(1, 40),
              hidden=st.integers(1, 24), vocab=st.integers(1, 200), chunk=st.integers(1, 16),
              dtype=st.sampled_from([torch.float32, torch.bfloat16]),
              eps=st.sampled_from([0.0, 0.1]), z=st.sampled_from([0.0, 1e-3]))


@given(**shapes)
def test_cpp_fused_linear_loss_matches_oracle(seed, tokens, hidden, vocab, chunk, dtype, eps, z):
    check("cpp", seed, tokens, hidden, vocab, chunk, dtype, eps, z)


@given(**shapes)
def test_reference_chunked_linear_loss_matches_oracle(seed, tokens, hidden, vocab, chunk, dtype,
                                                      eps, z):
    check("reference", seed, tokens, hidden, vocab, chunk, dtype, eps, z)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), tokens=st.integers(1, 10), hidden=st.integers(1, 16),
       vocab=st.integers(1, 150), chunk=st.integers(1, 6), dtype=st.just(torch.float32),
       eps=st.sampled_from([0.0, 0.1]), z=st.sampled_from([0.0, 1e-3]))
def test_triton_fused_linear_loss_matches_oracle(seed, tokens, hidden, vocab, chunk, dtype, eps,
                                                 z):
    check("triton", seed, tokens, hidden, vocab, chunk, dtype, eps, z, block=32)


def test_only_gradients_that_are_asked_for_are_computed():
    h, w, labels, mask = linear_case(0, 9, 8, 30, torch.float32)
    w.requires_grad_(True)
    loss, _ = linear_token_loss_sum(h, w, labels, mask, chunk_tokens=4, backend="cpp")
    loss.backward()
    assert h.grad is None and w.grad is not None
    with torch.no_grad():
        no_grad_loss, _ = linear_token_loss_sum(h, w, labels, mask, backend="cpp")
    torch.testing.assert_close(no_grad_loss, loss.detach())


def test_chunk_default_bounds_the_logits_buffer():
    # At least 1024 tokens (keeps the grad_weight accumulation compute-bound), else <= 1/25 of
    # the logits, never more tokens than there are.
    assert default_chunk_tokens(8192) == 1024
    assert default_chunk_tokens(16384) == 1024
    assert default_chunk_tokens(100) == 100  # one chunk for small inputs
    assert default_chunk_tokens(2**20) == 32768  # 1/32 of the logits
    assert all(default_chunk_tokens(n) <= min(n, max(1024, n / 25)) for n in
               (1, 1000, 5000, 8192, 50000, 10**6))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="weight must be"):
        linear_token_loss_sum(torch.randn(3, 4), torch.randn(5, 3), torch.zeros(3).long())
    with pytest.raises(ValueError, match="dtype|bfloat16"):
        linear_token_loss_sum(torch.randn(3, 4), torch.randn(5, 4).bfloat16(),
                                 torch.zeros(3).long())
