"""Fused LoRA linear (Triton under the interpreter) against the float64 reference: output and
dX, dA, dB (and a trainable bias's grad) over random shapes, ranks, dtypes, layouts, dropout."""

import contextlib

import pytest
import torch
from hypothesis import given, settings, strategies as st

from mbridge_kernels import lora, lora_linear, lora_linear_reference
from mbridge_kernels.lora import dropout_mask, row_groups

# (atol, rtol) relative to the largest reference value, by dtype: fp32 accumulation in every
# product; bf16/fp16 round x*mask, xa and dX once more than the float64 oracle.
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


@st.composite
def lora_case(draw, max_rank=128):
    layout = draw(st.sampled_from([None, None, "gated", "qkv"]))
    rank = draw(st.integers(1, max_rank if layout is None else max_rank // 3))
    k = draw(st.integers(1, 80))
    kwargs = {}
    if layout == "qkv":
        groups, head_dim, heads = draw(st.integers(1, 2)), draw(st.integers(1, 4)), \
            draw(st.integers(1, 2))
        m = groups * (heads + 2) * head_dim
        kwargs = dict(query_groups=groups, head_dim=head_dim)
    elif layout == "gated":
        m = 2 * draw(st.integers(1, 30))
    else:
        m = draw(st.integers(1, 60))
    lead = draw(st.sampled_from([(draw(st.integers(1, 40)),), (3, draw(st.integers(1, 9)))]))
    blocks = {None: 1, "gated": 2, "qkv": 3}[layout]
    return dict(lead=lead, k=k, m=m, rank=rank, blocks=blocks, layout=layout, kwargs=kwargs,
                seed=draw(st.integers(0, 2**31 - 2)))


def make(case, dtype, bias, train_bias=False):
    g = torch.Generator().manual_seed(case["seed"])
    k, m, r = case["k"], case["m"], case["rank"]
    x = torch.randn(*case["lead"], k, generator=g, dtype=torch.float64)
    w = torch.randn(m, k, generator=g, dtype=torch.float64) / k**0.5
    b = torch.randn(m, generator=g, dtype=torch.float64) if bias else None
    a = torch.randn(case["blocks"] * r, k, generator=g, dtype=torch.float64) / k**0.5
    bb = torch.randn(m, r, generator=g, dtype=torch.float64) / r**0.5
    dy = torch.randn(*case["lead"], m, generator=g, dtype=torch.float64)
    cast = [t if t is None else t.to(dtype) for t in (x, w, b, a, bb, dy)]
    x, w, b, a, bb, dy = cast
    x.requires_grad_(True)
    a.requires_grad_(True)
    bb.requires_grad_(True)
    if b is not None and train_bias:
        b.requires_grad_(True)
    return x, w, b, a, bb, dy


def oracle(x, w, b, a, bb, dy, scale, p, mask, case):
    leaves = [t.detach().double().requires_grad_(t.requires_grad) if t is not None else None
              for t in (x, w, b, a, bb)]
    groups = row_groups(case["layout"], case["m"], **case["kwargs"])
    y = lora_linear_reference(*leaves, scale, p, mask=mask, row_groups=groups)
    y.backward(dy.double())
    return y.detach(), [t.grad if t is not None else None for t in leaves]


@contextlib.contextmanager
def kernels_policy(policy):
    """Force the Triton kernels ("always") or leave cuBLAS the dropout-free products."""
    saved = dict(lora.kernel_policy)
    lora.kernel_policy.update(down=policy, dx_da=policy)
    try:
        yield
    finally:
        lora.kernel_policy.update(saved)


def close(got, want, dtype, what):
    tol = TOL[dtype]
    scale = max(want.abs().max().item(), 1.0)
    torch.testing.assert_close(got.double(), want, atol=tol * scale, rtol=tol, msg=what)


@settings(max_examples=25)
@given(case=lora_case(), dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
       bias=st.booleans(), p=st.sampled_from([0.0, 0.0, 0.3]),
       policy=st.sampled_from(["dropout", "always"]), train_bias=st.booleans())
def test_triton_matches_float64_reference(case, dtype, bias, p, policy, train_bias):
    x, w, b, a, bb, dy = make(case, dtype, bias, train_bias)
    scale = 0.5
    with kernels_policy(policy):
        y = lora_linear(x, w, b, a, bb, scale, p, backend="triton", seed=case["seed"],
                        layout=case["layout"], **case["kwargs"])
        y.backward(dy)
    mask = dropout_mask(case["seed"], x.shape, p) if p else None
    ref_y, (dx, _, dbias, da, db) = oracle(x, w, b, a, bb, dy, scale, p, mask, case)
    assert y.dtype == dtype and y.shape == ref_y.shape
    close(y, ref_y, dtype, "y")
    close(x.grad, dx, dtype, "dX")
    close(a.grad, da, dtype, "dA")
    close(bb.grad, db, dtype, "dB")
    assert w.grad is None
    if b is not None:
        if train_bias:
            close(b.grad, dbias, dtype, "dbias")
        else:
            assert b.grad is None


def test_dropout_mask_is_seeded_has_the_keep_rate_and_is_not_periodic():
    shape = (64, 256)
    m1 = dropout_mask(7, shape, 0.3)
    assert torch.equal(m1, dropout_mask(7, shape, 0.3))
    assert not torch.equal(m1, dropout_mask(8, shape, 0.3))
    assert abs(m1.float().mean().item() - 0.7) < 0.02  # 5 sigma at 16384 draws
    assert not torch.equal(m1[0], m1[1]) and not torch.equal(m1[:, 0], m1[:, 1])


def test_forward_and_backward_use_one_mask_and_store_none():
    """The dA and dX of a dropout call match the reference fed that call's own mask, and the
    autograd graph keeps nothing the size of x except x itself (no mask, no dropped copy)."""
    case = dict(lead=(40,), k=64, m=48, rank=8, blocks=1, layout=None, kwargs={}, seed=3)
    x, w, b, a, bb, dy = make(case, torch.float32, True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = lora_linear(x, w, b, a, bb, 2.0, 0.5, backend="triton", seed=11)
    big = [t for t in saved if t.numel() >= x.numel() and t.data_ptr() not in
           (x.data_ptr(), w.data_ptr())]
    assert not big
    y.backward(dy)
    mask = dropout_mask(11, x.shape, 0.5)
    ref_y, (dx, _, _, da, db) = oracle(x, w, b, a, bb, dy, 2.0, 0.5, mask, case)
    for got, want, what in ((y, ref_y, "y"), (x.grad, dx, "dX"), (a.grad, da, "dA"),
                            (bb.grad, db, "dB")):
        close(got, want, torch.float32, what)


def test_seed_drawn_from_the_generator_repeats_with_its_state():
    case = dict(lead=(20,), k=33, m=17, rank=4, blocks=1, layout=None, kwargs={}, seed=5)
    x, w, b, a, bb, _ = make(case, torch.float32, False)
    outs = [lora_linear(x, w, b, a, bb, 1.0, 0.4, backend="triton",
                        generator=torch.Generator().manual_seed(99)) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])
    other = lora_linear(x, w, b, a, bb, 1.0, 0.4, backend="triton",
                        generator=torch.Generator().manual_seed(100))
    assert not torch.equal(outs[0], other)


def test_reference_layouts_are_per_block_loras():
    """qkv: the q/k/v rows of megatron's interleaved linear_qkv each get their own adapter."""
    torch.manual_seed(0)
    groups, head_dim, heads, k, r = 2, 2, 1, 8, 3
    m = groups * (heads + 2) * head_dim
    x, w = torch.randn(5, k), torch.zeros(m, k)
    a = torch.randn(3 * r, k)
    b = torch.randn(m, r)
    y = lora_linear(x, w, None, a, b, 1.0, layout="qkv", query_groups=groups,
                    head_dim=head_dim, backend="reference")
    kinds = row_groups("qkv", m, query_groups=groups, head_dim=head_dim)
    assert kinds.tolist() == [0, 0, 1, 1, 2, 2] * groups
    for row in range(m):
        blk = kinds[row].item()
        want = x @ a[blk * r:(blk + 1) * r].t() @ b[row]
        torch.testing.assert_close(y[:, row], want)


def test_auto_backend_and_bad_arguments():
    from mbridge_kernels.lora import resolve_backend

    assert resolve_backend("auto", torch.device("cpu")) == "reference"
    x, w, a, b = torch.randn(4, 8), torch.randn(6, 8), torch.randn(2, 8), torch.randn(6, 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        lora_linear(x, w, None, a, b, 1.0, backend="fast")
    with pytest.raises(ValueError, match="weight must be frozen"):
        lora_linear(x, w.requires_grad_(True), None, a, b, 1.0)
    w.requires_grad_(False)
    with pytest.raises(ValueError, match="lora_b"):
        lora_linear(x, w, None, a, torch.randn(5, 2), 1.0)
    with pytest.raises(ValueError, match="lora_a has 2 rows"):
        lora_linear(x, w, None, a, b, 1.0, layout="gated")
    with pytest.raises(ValueError, match="dropout_p"):
        lora_linear(x, w, None, a, b, 1.0, 1.0)
    with pytest.raises(ValueError, match="lora_a is torch.float64"):
        lora_linear(x, w, None, a.double(), b, 1.0)
    with pytest.raises(ValueError, match="query_groups"):
        lora_linear(x, w, None, torch.randn(6, 8), b, 1.0, layout="qkv")


def test_blocks_wider_than_one_rank_tile_are_chunked():
    """qkv at rank 50 is 150 adapter rows: the backward kernel runs in two rank chunks."""
    case = dict(lead=(18,), k=40, m=2 * (1 + 2) * 2, rank=50, blocks=3, layout="qkv",
                kwargs=dict(query_groups=2, head_dim=2), seed=9)
    x, w, b, a, bb, dy = make(case, torch.float32, False)
    with kernels_policy("always"):
        y = lora_linear(x, w, b, a, bb, 0.25, 0.2, backend="triton", seed=4,
                        layout="qkv", **case["kwargs"])
        y.backward(dy)
    mask = dropout_mask(4, x.shape, 0.2)
    ref_y, (dx, _, _, da, db) = oracle(x, w, b, a, bb, dy, 0.25, 0.2, mask, case)
    for got, want, what in ((y, ref_y, "y"), (x.grad, dx, "dX"), (a.grad, da, "dA"),
                            (bb.grad, db, "dB")):
        close(got, want, torch.float32, what)
