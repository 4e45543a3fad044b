"""Fused masked token loss (Triton under the interpreter, C++ CPU path) against the float64
oracle: loss, token count and gradient, over random shapes, dtypes, masks and options."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from helpers import DTYPES, GRAD_TOL, IGNORE, assert_loss_close, loss_case, oracle
from mbridge_kernels import token_loss_sum

CPU_BACKENDS = ["triton", "cpp"]


OPTIONS = dict(
    dtype=st.sampled_from(DTYPES),
    eps=st.sampled_from([0.0, 0.1]),
    z=st.sampled_from([0.0, 1e-2]),
    inplace=st.booleans(),
    grad_scale=st.sampled_from([1.0, 0.37]),
)


@given(case=loss_case(), block=st.sampled_from([16, 32, 64]), **OPTIONS)
def test_cpp_loss_matches_float64_oracle(case, dtype, eps, z, inplace, block, grad_scale):
    check_against_oracle("cpp", case, dtype, eps, z, inplace, block, grad_scale)


# The C++ kernel takes rows in blocks of 2**19 logits spread over the threads: vocabularies of
# 7K-20K with up to 120 rows make 1-9 blocks, the last one ragged.
@settings(max_examples=8)
@given(case=loss_case(max_tokens=120, max_vocab=20_000, min_vocab=7_000), **OPTIONS)
def test_cpp_loss_over_several_row_blocks_matches_float64_oracle(case, dtype, eps, z, inplace,
                                                                 grad_scale):
    check_against_oracle("cpp", case, dtype, eps, z, inplace, None, grad_scale)


# Triton's interpreter costs ~30 ms per row program: fewer, smaller examples, and tiles small
# enough that most rows span several tiles with a ragged tail.
@settings(max_examples=20)
@given(case=loss_case(max_tokens=12, max_vocab=200), block=st.sampled_from([32, 64]), **OPTIONS)
def test_triton_loss_matches_float64_oracle(case, dtype, eps, z, inplace, block, grad_scale):
    check_against_oracle("triton", case, dtype, eps, z, inplace, block, grad_scale)


def check_against_oracle(backend, case, dtype, eps, z, inplace, block, grad_scale):
    logits64, labels, mask = case
    logits = logits64.to(dtype).requires_grad_(True)
    kwargs = dict(ignore_index=IGNORE, label_smoothing=eps, z_loss_weight=z)
    ref_loss, ref_count, ref_grad = oracle(logits, labels, mask, grad_scale, **kwargs)

    loss, count = token_loss_sum(logits, labels, mask, inplace_backward=inplace,
                                    backend=backend, block_size=block, **kwargs)
    (loss * grad_scale).backward()

    assert_loss_close(loss, ref_loss, ref_count)
    assert count.dtype == torch.float32 and count.dim() == 0
    torch.testing.assert_close(count.double(), ref_count, rtol=1e-6, atol=1e-6)
    assert logits.grad.dtype == dtype
    atol, rtol = GRAD_TOL[dtype]
    torch.testing.assert_close(logits.grad.double(), ref_grad, atol=atol, rtol=rtol)
    if inplace:
        assert logits.grad.data_ptr() == logits.data_ptr()
    else:
        assert logits.grad.data_ptr() != logits.data_ptr()
        assert torch.equal(logits.detach(), logits64.to(dtype))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_inplace_gradient_reuses_the_logits_storage_and_allocates_no_logits_sized_tensor(backend):
    logits = torch.randn(7, 50, requires_grad=True)
    labels = torch.randint(0, 50, (7,))
    expected = oracle(logits, labels, None)[2]
    big = []

    def pack(t):  # every tensor autograd saves, and the gradient's storage, must be the logits'
        big.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = token_loss_sum(logits, labels, inplace_backward=True, backend=backend,
                                    block_size=16)
    loss.backward()
    assert not [t for t in big if t.numel() >= logits.numel()]
    assert logits.grad.untyped_storage().data_ptr() == logits.untyped_storage().data_ptr()
    torch.testing.assert_close(logits.grad.double(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_inplace_write_is_caught_when_autograd_still_needs_the_logits(backend):
    a = torch.randn(4, 20, requires_grad=True)
    logits = a.exp()  # exp saves its output for the backward
    loss, _ = token_loss_sum(logits, torch.randint(0, 20, (4,)), inplace_backward=True,
                                backend=backend)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_gradient_wanted_leaves_logits_untouched_even_inplace(backend):
    logits = torch.randn(5, 40)
    before = logits.clone()
    labels = torch.randint(0, 40, (5,))
    loss, count = token_loss_sum(logits, labels, inplace_backward=True, backend=backend)
    assert torch.equal(logits, before)
    assert_loss_close(loss, oracle(logits, labels, None)[0], count)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy sees the NaNs
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_uncounted_rows_give_zero_loss_and_gradient_even_when_not_finite(backend):
    logits = torch.randn(3, 33)
    logits[1] = float("nan")
    logits[2, 5] = float("inf")
    logits.requires_grad_(True)
    labels = torch.tensor([3, 4, IGNORE])
    loss, count = token_loss_sum(logits, labels, torch.tensor([1.0, 0.0, 1.0]),
                                    backend=backend, block_size=16)
    loss.backward()
    assert count == 1 and torch.isfinite(loss)
    assert torch.all(logits.grad[1:] == 0)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits[:1].detach(), labels[:1],
                                                                 reduction="sum"))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_batched_leading_dims_and_non_contiguous_rows(backend):
    full = torch.randn(2, 3, 64)
    logits = full[..., :45].requires_grad_(True)  # row stride 64, unit vocab stride
    labels = torch.randint(0, 45, (2, 3))
    mask = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    loss, count = token_loss_sum(logits, labels, mask, inplace_backward=True, backend=backend,
                                    block_size=16)
    loss.backward()
    ref_loss, ref_count, ref_grad = oracle(logits, labels, mask)
    assert_loss_close(loss, ref_loss, ref_count)
    assert logits.grad.shape == logits.shape
    torch.testing.assert_close(logits.grad.double(), ref_grad, atol=1e-6, rtol=1e-5)


def test_auto_backend_on_cpu_and_bad_arguments():
    from mbridge_kernels.token_loss import resolve_backend

    assert resolve_backend("auto", torch.device("cpu")) == "cpp"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("fast", torch.device("cpu"))
    with pytest.raises(RuntimeError, match="cuda backend"):
        resolve_backend("cuda", torch.device("cpu"))
    with pytest.raises(ValueError, match="labels"):
        token_loss_sum(torch.randn(3, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="label_smoothing"):
        token_loss_sum(torch.randn(3, 5), torch.zeros(3, dtype=torch.long), label_smoothing=2)
