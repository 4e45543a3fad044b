"""mbridge_models.runtime: megatron-core's CUDA-only calls redirected on CPU, inert with CUDA."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mbridge_models import runtime
from multirank import run_ranks

cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="redirection is inert with CUDA")

CUDA_SPELLINGS = ["cuda", "cuda:0", "cuda:1", 0, 1, torch.device("cuda"), torch.device("cuda", 0)]

FACTORIES = {
    "zeros": lambda d: torch.zeros(3, device=d),
    "ones": lambda d: torch.ones(3, device=d) - 1,
    "empty": lambda d: torch.empty(3, device=d).fill_(0),
    "full": lambda d: torch.full((3,), 0.0, device=d),
    "tensor": lambda d: torch.tensor([0.0, 0.0, 0.0], device=d),
    "arange": lambda d: torch.arange(3, device=d) * 0.0,
    "new_zeros": lambda d: torch.ones(1).new_zeros(3, device=d),
    "to_positional": lambda d: torch.zeros(3).to(d),
    "to_keyword": lambda d: torch.zeros(3).to(device=d),
    "cuda": lambda d: torch.zeros(3).cuda(d if isinstance(d, int) else None),
}


def _patched_values():
    return [(owner, name, getattr(owner, name)) for owner, name, _ in runtime._patches()]


@pytest.fixture
def active():
    runtime.activate()
    yield
    runtime.deactivate()


@cpu_only
def test_activate_then_deactivate_restores_everything():
    before = _patched_values()
    modes_before = torch._C._len_torch_function_stack()
    assert runtime.activate() is True
    assert runtime.activate() is True  # idempotent: nothing patched twice
    assert runtime.is_active()
    assert all(getattr(o, n) is not v for o, n, v in before)
    assert torch._C._len_torch_function_stack() == modes_before + 1
    runtime.deactivate()
    assert not runtime.is_active()
    assert all(getattr(o, n) is v for o, n, v in before)
    assert torch._C._len_torch_function_stack() == modes_before
    runtime.deactivate()  # a second deactivate is harmless


def test_inert_when_cuda_is_present(monkeypatch):
    monkeypatch.setattr(runtime, "needs_cpu_runtime", lambda: False)
    before = _patched_values()
    assert runtime.activate() is False
    assert not runtime.is_active()
    assert all(getattr(o, n) is v for o, n, v in before)


@pytest.mark.gpu
def test_inert_on_a_real_gpu():
    assert runtime.activate() is False
    assert torch.zeros(1, device="cuda").is_cuda
    assert torch.zeros(1, device="cuda").type() == "torch.cuda.FloatTensor"
    assert torch.zeros(1).type() == "torch.FloatTensor"


@cpu_only
def test_cuda_placements_fail_without_the_runtime():
    """The control for the tests below: on this machine these calls really need the runtime."""
    with pytest.raises((RuntimeError, AssertionError)):
        torch.zeros(3, device="cuda")
    with pytest.raises((RuntimeError, AssertionError)):
        torch.cuda.current_device()


@cpu_only
@given(factory=st.sampled_from(sorted(FACTORIES)), device=st.sampled_from(CUDA_SPELLINGS))
def test_cuda_placements_land_on_cpu(factory, device):
    with runtime.cpu_runtime():
        out = FACTORIES[factory](device)
    assert out.device.type == "cpu"
    assert torch.equal(out, torch.zeros(3))


@cpu_only
@given(dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.int64]))
def test_type_names_read_as_cuda(dtype):
    x = torch.zeros(2, dtype=dtype)
    with runtime.cpu_runtime():
        name = x.type()
        converted = x.type(torch.float64)  # with an argument, type() converts as usual
    assert name.startswith("torch.cuda.") and name.endswith("Tensor")
    assert name == x.type().replace("torch.", "torch.cuda.", 1)
    assert converted.dtype == torch.float64 and converted.device.type == "cpu"


@cpu_only
def test_streams_events_and_memory_queries_are_harmless(active):
    stream = torch.cuda.Stream(device=torch.cuda.current_device())
    with torch.cuda.stream(stream):
        y = torch.ones(2) * 2
    stream.wait_stream(torch.cuda.current_stream())
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    end.record()
    torch.cuda.synchronize()
    assert start.elapsed_time(end) == 0.0
    assert torch.cuda.memory_allocated() == 0 and torch.cuda.max_memory_allocated() == 0
    assert torch.equal(y, torch.full((2,), 2.0))
    assert torch.ones(2).pin_memory().device.type == "cpu"


@cpu_only
def test_cuda_seed_and_state_drive_the_cpu_generator(active):
    torch.cuda.manual_seed(7)
    state = torch.cuda.get_rng_state()
    a = torch.rand(4)
    torch.cuda.set_rng_state(state)
    assert torch.equal(torch.rand(4), a)
    torch.manual_seed(7)  # calls torch.cuda.manual_seed_all internally: must not recurse
    assert torch.equal(torch.rand(4), a)


def _rng_streams(rank, world_size):
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel.random import (
        get_cuda_rng_tracker,
        model_parallel_cuda_manual_seed,
    )

    parallel_state.initialize_model_parallel(tensor_model_parallel_size=world_size)
    model_parallel_cuda_manual_seed(1234)
    tracker = get_cuda_rng_tracker()
    default_1 = torch.rand(3)
    with tracker.fork():
        forked_1 = torch.rand(3)
    default_2 = torch.rand(3)
    with tracker.fork():
        forked_2 = torch.rand(3)
    # The same seed again, this time without the forks in between.
    model_parallel_cuda_manual_seed(1234)
    plain = torch.rand(6)
    return default_1, default_2, forked_1, forked_2, plain


@cpu_only
@pytest.mark.multiproc
def test_rng_tracker_forks_the_cpu_generator_like_megatron_forks_cuda():
    (d1, d2, f1, f2, plain), = run_ranks(_rng_streams, 1)
    # Forked draws leave the default stream untouched ...
    assert torch.equal(torch.cat([d1, d2]), plain)
    # ... and continue their own stream.
    assert not torch.equal(f1, d1) and not torch.equal(f1, f2)


@cpu_only
@pytest.mark.multiproc
def test_rng_tracker_streams_across_tensor_parallel_ranks():
    r0, r1 = run_ranks(_rng_streams, 2)
    # Default (data-parallel) stream: same on both TP ranks; model-parallel stream: different.
    assert torch.equal(r0[0], r1[0]) and torch.equal(r0[4], r1[4])
    assert not torch.equal(r0[2], r1[2])


# ------------------------------------------------------------------ fp32 arithmetic, low-precision tensors

LOW = [torch.bfloat16, torch.float16]
MATMULS = {  # name -> (call, operand shapes)
    "matmul": (lambda a, b: torch.matmul(a, b), [(2, 5, 7), (7, 3)]),
    "@": (lambda a, b: a @ b, [(5, 7), (7, 3)]),
    "mm": (lambda a, b: a.mm(b), [(5, 7), (7, 3)]),
    "bmm": (lambda a, b: torch.bmm(a, b), [(2, 5, 7), (2, 7, 3)]),
    "baddbmm": (lambda c, a, b: torch.baddbmm(c, a, b, beta=0.5, alpha=2.0),
                [(2, 5, 3), (2, 5, 7), (2, 7, 3)]),
    "addmm": (lambda c, a, b: torch.addmm(c, a, b), [(5, 3), (5, 7), (7, 3)]),
    "linear": (lambda x, w: torch.nn.functional.linear(x, w), [(4, 5, 7), (3, 7)]),
    "sdpa": (lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, is_causal=True), [(1, 2, 6, 8), (1, 2, 6, 8), (1, 2, 6, 8)]),
}


class _MatmulDtypes(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the operand dtypes of every aten matmul-family kernel that runs."""

    KERNELS = ("mm", "bmm", "addmm", "baddbmm", "_scaled_dot_product")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name.startswith(self.KERNELS):
            self.seen += [a.dtype for a in args if torch.is_tensor(a) and a.is_floating_point()]
        return func(*args, **(kwargs or {}))


@pytest.fixture
def widened(active):
    runtime.compute_in_fp32(LOW)
    yield
    runtime.compute_in_fp32()


@cpu_only
@given(name=st.sampled_from(sorted(MATMULS)), dtype=st.sampled_from(LOW), seed=st.integers(0, 99))
def test_widened_matmuls_compute_in_fp32_and_return_their_dtype(name, dtype, seed):
    call, shapes = MATMULS[name]
    generator = torch.Generator().manual_seed(seed)
    operands = [torch.randn(s, generator=generator).to(dtype) for s in shapes]
    with runtime.cpu_runtime():
        runtime.compute_in_fp32([dtype])
        try:
            with _MatmulDtypes() as spy:
                result = call(*operands)
        finally:
            runtime.compute_in_fp32()
        # The oracle: the same call on fp32 copies, rounded once.
        expected = call(*[o.float() for o in operands]).to(dtype)
    assert result.dtype == dtype
    assert spy.seen and set(spy.seen) == {torch.float32}
    assert torch.equal(result, expected)


@cpu_only
def test_widening_keeps_gradients_in_the_tensor_dtype_and_fp32_untouched(widened):
    x = torch.randn(4, 7, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(3, 7, dtype=torch.bfloat16, requires_grad=True)
    with _MatmulDtypes() as spy:
        torch.nn.functional.linear(x, w).sum().backward()
    assert x.grad.dtype == w.grad.dtype == torch.bfloat16
    assert set(spy.seen) == {torch.float32}  # backward's matmuls too
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    assert torch.equal(a @ b, torch.mm(a, b))


@cpu_only
def test_off_by_default_and_after_deactivate(active):
    a, b = torch.randn(5, 7, dtype=torch.bfloat16), torch.randn(7, 3, dtype=torch.bfloat16)
    with _MatmulDtypes() as spy:
        a @ b
    assert spy.seen == [torch.bfloat16, torch.bfloat16]
    runtime.compute_in_fp32(LOW)
    runtime.deactivate()
    assert runtime.fp32_compute_dtypes() == frozenset()


def test_native_matmul_follows_onednn():
    assert runtime.native_matmul(torch.float32)
    assert runtime.native_matmul(torch.bfloat16) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert runtime.native_matmul(torch.float16) == torch.ops.mkldnn._is_mkldnn_fp16_supported()
