"""Run the real megatron-core stack on a CPU (over gloo) when no CUDA device is present.

megatron-core assumes CUDA in a handful of places: tensors created with ``device="cuda"`` or
``device=torch.cuda.current_device()``, ``.cuda()`` calls, the CUDA RNG tracker, streams and
events, ``torch.cuda.synchronize()``, and ``Tensor.type() == "torch.cuda.FloatTensor"`` checks in
the optimizer and grad clipping. ``activate()`` redirects exactly those to CPU equivalents; with a
CUDA device it does nothing. This module is the only place in mbridge where such redirection
exists, and ``deactivate()`` undoes all of it.

Two mechanisms, both undone by ``deactivate()``:

* attribute patches on ``torch.cuda`` (current_device, streams, events, RNG state, memory
  queries) and on megatron-core's RNG helpers, so its tracker forks the CPU generator;
* a ``TorchFunctionMode`` that rewrites CUDA ``device=`` arguments to CPU, makes ``.cuda()`` and
  ``.pin_memory()`` identities, and reports CPU tensor types under their CUDA names.

The mode is thread-local (as all torch function modes are): activate it in the thread that runs
the model.

Low precision on a CPU: a bf16/fp16 matmul is fast only where oneDNN has native kernels
(AVX512-BF16 / AMX, AVX512-FP16); elsewhere it runs many times slower than fp32.
``compute_in_fp32(dtypes)`` makes the mode run every matmul-like call (mm, bmm, baddbmm, addmm,
matmul, linear, SDPA) whose operands are of those dtypes in fp32 and round the result back: the
tensors keep their dtype (parameters, activations, checkpoints stay bf16), only the arithmetic is
wider, as on a GPU's tensor cores (low-precision inputs, fp32 accumulation, low-precision output).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import threading
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["activate", "deactivate", "is_active", "cpu_runtime", "needs_cpu_runtime",
           "compute_in_fp32", "fp32_compute_dtypes", "native_matmul"]

_lock = threading.Lock()
_undo: list[Callable[[], None]] = []  # run in reverse order by deactivate()
_active = False
_fp32_compute: frozenset = frozenset()  # low-precision dtypes whose matmuls run in fp32


def needs_cpu_runtime() -> bool:
    """True when megatron-core cannot use CUDA here, so the redirection is wanted."""
    return not torch.cuda.is_available()


def is_active() -> bool:
    return _active


def training_device() -> torch.device:
    """Where this process computes: its current CUDA device, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def native_matmul(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies ``dtype`` at full speed (fp32 always; bf16 with AVX512-BF16
    or AMX, fp16 with AVX512-FP16 or AMX-FP16: oneDNN's own checks)."""
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if dtype == torch.float16:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return True


def compute_in_fp32(dtypes=()) -> None:
    """While the CPU runtime is active, matmuls of ``dtypes`` operands compute in fp32 (see the
    module docstring); ``compute_in_fp32()`` turns it off. Reset by ``deactivate()``."""
    global _fp32_compute
    _fp32_compute = frozenset(d for d in dtypes if d != torch.float32)


def fp32_compute_dtypes() -> frozenset:
    return _fp32_compute


def activate() -> bool:
    """Redirect megatron-core's CUDA-only calls to the CPU. Inert (returns False) with CUDA.

    Idempotent; returns True when the redirection is (now) active.
    """
    global _active
    if not needs_cpu_runtime():
        return False
    with _lock:
        if _active:
            return True
        for owner, name, value in _patches():
            original = getattr(owner, name)
            setattr(owner, name, value)
            _undo.append(lambda o=owner, n=name, v=original: setattr(o, n, v))
        # On a CPU the tracker's "device" generator *is* the CPU generator, so megatron-core's
        # "CPU RNG state changed within GPU RNG context" warning is expected and meaningless.
        rng_logger = logging.getLogger("megatron.core.tensor_parallel.random")
        rng_logger.addFilter(_drop_cpu_rng_warning)
        _undo.append(lambda: rng_logger.removeFilter(_drop_cpu_rng_warning))
        for cls, original in _megatron_autograd_functions():
            cls.backward = staticmethod(_backward_on_cpu(original.__func__))
            _undo.append(lambda c=cls, o=original: setattr(c, "backward", o))
        mode = _CudaToCpuMode()
        mode.__enter__()
        _undo.append(lambda: mode.__exit__(None, None, None))
        _active = True
    return True


def deactivate() -> None:
    """Undo everything ``activate()`` did, restoring the original attributes."""
    global _active, _fp32_compute
    with _lock:
        while _undo:
            _undo.pop()()
        _active = False
        _fp32_compute = frozenset()


@contextlib.contextmanager
def cpu_runtime():
    """``with cpu_runtime(): ...`` activates for the block and restores afterwards."""
    was_active = is_active()
    activate()
    try:
        yield
    finally:
        if not was_active:
            deactivate()


def _drop_cpu_rng_warning(record: logging.LogRecord) -> bool:
    return "CPU RNG state changed within GPU RNG context" not in record.getMessage()


# --------------------------------------------------------------------------- attribute patches


class _NullStream:
    """Stands in for torch.cuda.Stream: CPU work is already ordered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wait_stream(self, stream: Any) -> None:
        pass

    def wait_event(self, event: Any) -> None:
        pass

    def record_event(self, event: Any = None) -> "_NullEvent":
        return event if event is not None else _NullEvent()

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True

    def __enter__(self) -> "_NullStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class _NullEvent:
    """Stands in for torch.cuda.Event: everything has already happened on the CPU."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record(self, stream: Any = None) -> None:
        pass

    def wait(self, stream: Any = None) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, end_event: Any) -> float:
        return 0.0


def _cpu_get_rng_state(*args: Any, **kwargs: Any) -> torch.Tensor:
    return torch.get_rng_state()


def _cpu_set_rng_state(new_state: torch.Tensor, *args: Any, **kwargs: Any) -> None:
    torch.set_rng_state(new_state)


def _cpu_manual_seed(seed: int, *args: Any, **kwargs: Any) -> None:
    # Not torch.manual_seed: that one calls torch.cuda.manual_seed_all, i.e. back into us.
    torch.default_generator.manual_seed(int(seed))


def _stand_in(body: Callable[..., Any]) -> Callable[..., Any]:
    """A new function object per patched attribute: torch._dynamo keys its rules by object
    identity and rejects one object standing for two torch.cuda functions."""

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        return body(*args, **kwargs)

    return stand_in


def _patches() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, replacement) for every CUDA-only entry point megatron-core uses."""
    nothing = lambda *a, **k: None  # noqa: E731
    zero = lambda *a, **k: 0  # noqa: E731
    null_stream = lambda *a, **k: _NullStream()  # noqa: E731
    null_context = lambda *a, **k: contextlib.nullcontext()  # noqa: E731
    cuda = torch.cuda
    patches: list[tuple[Any, str, Any]] = [
        (cuda, "Stream", _NullStream),
        (cuda, "Event", _NullEvent),
    ]
    patches += [
        (cuda, name, _stand_in(body))
        for name, body in [
            ("current_device", zero),
            ("set_device", nothing),
            ("synchronize", nothing),
            ("empty_cache", nothing),
            ("current_stream", null_stream),
            ("default_stream", null_stream),
            ("stream", null_context),
            ("get_rng_state", _cpu_get_rng_state),
            ("set_rng_state", _cpu_set_rng_state),
            ("manual_seed", _cpu_manual_seed),
            ("manual_seed_all", _cpu_manual_seed),
            ("memory_allocated", zero),
            ("max_memory_allocated", zero),
            ("memory_reserved", zero),
            ("max_memory_reserved", zero),
            ("reset_peak_memory_stats", nothing),
        ]
    ]
    # megatron-core's tracker swaps generator states through these two module-level helpers.
    mcore_random = importlib.import_module("megatron.core.tensor_parallel.random")
    patches += [
        (mcore_random, "_get_cuda_rng_state", _stand_in(_cpu_get_rng_state)),
        (mcore_random, "_set_cuda_rng_state", _stand_in(_cpu_set_rng_state)),
    ]
    # Its MoE all-to-all dispatcher hands split sizes to all_to_all_single as numpy arrays only
    # for tensors it moved off a GPU; CPU tensors would stay tensors, which c10d refuses.
    dispatcher = importlib.import_module("megatron.core.transformer.moe.token_dispatcher")
    patches.append((dispatcher, "maybe_move_tensor_to_cpu", _splits_to_numpy))
    return patches


def _splits_to_numpy(tensor, as_numpy: bool = False, record_stream: bool = False):
    """megatron's maybe_move_tensor_to_cpu for tensors already on the CPU."""
    if as_numpy and torch.is_tensor(tensor):
        return tensor.numpy()
    return tensor


def _megatron_autograd_functions() -> list[tuple[type, staticmethod]]:
    """megatron-core's custom autograd functions (class, its own ``backward`` staticmethod)."""
    found, pending = [], list(torch.autograd.Function.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        backward = cls.__dict__.get("backward")
        if cls.__module__.startswith("megatron.core") and isinstance(backward, staticmethod):
            found.append((cls, backward))
    return found


def _backward_on_cpu(backward: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``backward`` with the CUDA-to-CPU mode on the stack.

    torch switches a function mode off while its handler runs, so a backward pass started from
    a call the mode intercepted (a user's ``loss.backward()``) runs without it, and megatron's
    tensor-parallel backward passes allocate on "the current CUDA device".
    """

    @functools.wraps(backward)
    def on_cpu(ctx: Any, *grads: Any) -> Any:
        with _CudaToCpuMode():
            return backward(ctx, *grads)

    return on_cpu


# --------------------------------------------------------------------------- torch function mode


def _is_cuda_device(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device == "cuda" or device.startswith("cuda:")
    # A bare int names a CUDA ordinal (torch.cuda.current_device() returns one).
    return isinstance(device, int) and not isinstance(device, bool)


def _cuda_type_name(cpu_name: str) -> str:
    """'torch.FloatTensor' -> 'torch.cuda.FloatTensor' (what megatron-core's checks expect)."""
    prefix = "torch."
    if cpu_name.startswith(prefix) and not cpu_name.startswith("torch.cuda."):
        return "torch.cuda." + cpu_name[len(prefix):]
    return cpu_name


def _identity(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


class _CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA placements to CPU for every torch call made while it is on the stack."""

    _identities: dict[Callable, Callable] = {
        torch.Tensor.cuda: _identity,
        torch.Tensor.pin_memory: _identity,
    }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._identities:
            return self._identities[func](*args, **kwargs)
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            return _cuda_type_name(func(*args))
        if _is_cuda_device(kwargs.get("device")):
            kwargs = {**kwargs, "device": "cpu"}
        if func is torch.Tensor.to and any(_is_cuda_device(a) for a in args[1:]):
            args = tuple("cpu" if _is_cuda_device(a) else a for a in args)
        if _fp32_compute and func in _MATMULS:
            return _matmul_in_fp32(func, args, kwargs)
        return func(*args, **kwargs)


_MATMULS = frozenset({
    torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__,
    torch.mm, torch.Tensor.mm, torch.bmm, torch.Tensor.bmm, torch.baddbmm, torch.Tensor.baddbmm,
    torch.addmm, torch.Tensor.addmm, torch.nn.functional.linear,
    torch.nn.functional.scaled_dot_product_attention,
})


def _matmul_in_fp32(func, args, kwargs):
    """``func`` on fp32 copies of its low-precision operands, rounded back to their dtype. An
    ``out=`` call (megatron's fused gradient accumulation) stays as it is."""
    low = [a.dtype for a in (*args, *kwargs.values())
           if torch.is_tensor(a) and a.dtype in _fp32_compute]
    if not low or "out" in kwargs:
        return func(*args, **kwargs)
    wide = lambda a: a.float() if torch.is_tensor(a) and a.dtype in _fp32_compute else a  # noqa: E731
    result = func(*map(wide, args), **{k: wide(v) for k, v in kwargs.items()})
    return result.to(low[0])
