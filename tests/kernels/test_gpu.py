"""All paths on a GPU against the float64 oracle, and the memory claims (skipped without CUDA).

Run on a GPU host: `python3 -m pytest tests/kernels -m gpu` (or `uv run pytest -m gpu tests/kernels`).
"""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from helpers import DTYPES, GRAD_TOL, IGNORE, assert_loss_close, loss_case, oracle
from mbridge_kernels import linear_token_loss_sum, token_loss_sum
from mbridge_kernels import token_loss_sum_reference
from mbridge_kernels import _extension

pytestmark = pytest.mark.gpu


def _backends():
    return ["triton", "cuda"] if _extension.has_cuda_kernel() else ["triton"]


@settings(max_examples=40)
@given(case=loss_case(max_tokens=64, max_vocab=5000), dtype=st.sampled_from(DTYPES),
       eps=st.sampled_from([0.0, 0.1]), z=st.sampled_from([0.0, 1e-3]), inplace=st.booleans(),
       block=st.sampled_from([None, 128]))
def test_gpu_backends_match_float64_oracle(case, dtype, eps, z, inplace, block):
    logits64, labels, mask = case
    kwargs = dict(ignore_index=IGNORE, label_smoothing=eps, z_loss_weight=z)
    for backend in _backends():
        logits = logits64.to(dtype).cuda().requires_grad_(True)
        ref_loss, ref_count, ref_grad = oracle(logits.cpu(), labels, mask, 0.5, **kwargs)
        loss, count = token_loss_sum(logits, labels.cuda(),
                                        None if mask is None else mask.cuda(),
                                        inplace_backward=inplace, backend=backend,
                                        block_size=block, **kwargs)
        (loss * 0.5).backward()
        assert_loss_close(loss.cpu(), ref_loss, ref_count)
        torch.testing.assert_close(count.double().cpu(), ref_count, rtol=1e-6, atol=1e-6)
        atol, rtol = GRAD_TOL[dtype]
        torch.testing.assert_close(logits.grad.double().cpu(), ref_grad, atol=atol, rtol=rtol)
        assert (logits.grad.data_ptr() == logits.data_ptr()) == inplace


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_inplace_fused_loss_allocates_no_logits_sized_memory(backend):
    if backend == "cuda" and not _extension.has_cuda_kernel():
        pytest.skip("CUDA extension not built")
    logits = torch.randn(4096, 32768, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, 32768, (4096,), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss, _ = token_loss_sum(logits, labels, inplace_backward=True, backend=backend)
    loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra < logits.numel() * logits.element_size() / 100


def test_fused_linear_loss_on_gpu_matches_oracle_and_stays_small():
    torch.manual_seed(0)
    n, h, v = 2048, 256, 50000
    hidden = torch.randn(n, h, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    weight = (torch.randn(v, h, device="cuda") / h**0.5).bfloat16().requires_grad_(True)
    labels = torch.randint(0, v, (n,), device="cuda")
    labels[::7] = IGNORE
    # Warm-up: cuBLAS allocates its workspace (32 MiB on Hopper) once per handle; that is not
    # the per-call memory this test bounds.
    linear_token_loss_sum(hidden.detach()[:8], weight.detach(), labels[:8])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    chunk = 128
    loss, count = linear_token_loss_sum(hidden, weight, labels, z_loss_weight=1e-4,
                                           chunk_tokens=chunk)
    loss.backward()
    torch.cuda.synchronize()
    grads = hidden.grad.nbytes + weight.grad.nbytes
    extra = torch.cuda.max_memory_allocated() - base - grads
    # One chunk of bf16 logits (+ per-token fp32 vectors and allocator rounding), not all.
    assert extra <= chunk * v * 2 * 1.05 + 64 * n
    h64 = hidden.detach().double().requires_grad_(True)
    w64 = weight.detach().double().requires_grad_(True)
    ref, ref_count = token_loss_sum_reference(h64 @ w64.t(), labels, ignore_index=IGNORE,
                                                 z_loss_weight=1e-4, compute_dtype=torch.float64)
    ref.backward()
    assert count.item() == ref_count.item()
    torch.testing.assert_close(loss.double(), ref.double(), rtol=2e-3, atol=1e-2)
    for got, want in [(hidden.grad, h64.grad), (weight.grad, w64.grad)]:
        scale = want.abs().max().item()
        torch.testing.assert_close(got.double(), want, rtol=3e-2, atol=3e-2 * scale)
