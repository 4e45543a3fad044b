"""lora_linear's Triton backend on a GPU against the float64 reference, compiled kernels (not
the interpreter), and its memory claim (skipped without CUDA).

Run on a GPU host: `python3 -m pytest tests/kernels/test_lora_gpu.py -m gpu`.
"""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from mbridge_kernels import lora, lora_linear, lora_linear_reference
from mbridge_kernels.lora import dropout_mask, row_groups

pytestmark = pytest.mark.gpu

TOL = {torch.float32: 2e-3, torch.float16: 4e-3, torch.bfloat16: 3e-2}  # fp32: cuBLAS TF32-free


@settings(max_examples=40)
@given(n=st.integers(1, 700), k=st.integers(1, 600), m=st.integers(1, 500),
       rank=st.sampled_from([1, 8, 16, 33, 64, 128]), layout=st.sampled_from([None, "gated"]),
       dtype=st.sampled_from([torch.bfloat16, torch.float16, torch.float32]),
       p=st.sampled_from([0.0, 0.1]), policy=st.sampled_from(["dropout", "always"]),
       bias=st.booleans(), seed=st.integers(0, 2**20))
def test_gpu_matches_float64_reference(n, k, m, rank, layout, dtype, p, policy, bias, seed):
    if layout == "gated":
        m += m % 2
    blocks = 2 if layout == "gated" else 1
    g = torch.Generator().manual_seed(seed)
    x64 = torch.randn(n, k, generator=g, dtype=torch.float64)
    w64 = torch.randn(m, k, generator=g, dtype=torch.float64) / k**0.5
    b64 = torch.randn(m, generator=g, dtype=torch.float64) if bias else None
    a64 = torch.randn(blocks * rank, k, generator=g, dtype=torch.float64) / k**0.5
    bb64 = torch.randn(m, rank, generator=g, dtype=torch.float64) / rank**0.5
    dy64 = torch.randn(n, m, generator=g, dtype=torch.float64)
    cuda = [t if t is None else t.to("cuda", dtype) for t in (x64, w64, b64, a64, bb64, dy64)]
    x, w, b, a, bb, dy = cuda
    for t in (x, a, bb):
        t.requires_grad_(True)
    saved = dict(lora.kernel_policy)
    lora.kernel_policy.update(down=policy, dx_da=policy)
    try:
        y = lora_linear(x, w, b, a, bb, 0.5, p, backend="triton", seed=seed, layout=layout)
        y.backward(dy)
    finally:
        lora.kernel_policy.update(saved)
    mask = dropout_mask(seed, (n, k), p, device="cuda").cpu() if p else None
    leaves = [t if t is None else t.detach().cpu().double().requires_grad_(t.requires_grad)
              for t in (x, w, b, a, bb)]
    ref = lora_linear_reference(*leaves, 0.5, p, mask=mask,
                                row_groups=row_groups(layout, m))
    ref.backward(dy.cpu().double())
    tol = TOL[dtype]
    for got, want in ((y, ref), (x.grad, leaves[0].grad), (a.grad, leaves[3].grad),
                      (bb.grad, leaves[4].grad)):
        scale = max(want.abs().max().item(), 1.0)
        torch.testing.assert_close(got.detach().cpu().double(), want.detach(),
                                   atol=tol * scale, rtol=tol)
    assert w.grad is None


def test_gpu_dropout_stores_no_mask_and_keeps_its_rate():
    torch.manual_seed(0)
    n, k, m, r = 8192, 4096, 4096, 16
    x = torch.randn(n, k, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(m, k, device="cuda", dtype=torch.bfloat16) / 64
    a = (torch.randn(r, k, device="cuda", dtype=torch.bfloat16) / 64).requires_grad_(True)
    b = torch.randn(m, r, device="cuda", dtype=torch.bfloat16).requires_grad_(True)
    lora_linear(x, w, None, a, b, 2.0, 0.1, seed=1).sum().backward()  # warm-up / compile
    x.grad = a.grad = b.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    y = lora_linear(x, w, None, a, b, 2.0, 0.1, seed=2)
    graph = torch.cuda.memory_allocated() - base - y.numel() * y.element_size()
    assert graph < 0.05 * x.numel() * x.element_size()  # xa [n, r] and the seed only
    keep = dropout_mask(3, (n, k), 0.1, device="cuda").float().mean().item()
    assert abs(keep - 0.9) < 1e-3
