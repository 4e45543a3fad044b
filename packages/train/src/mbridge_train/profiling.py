"""ProfilingConfig in the loop: a PyTorch profiler or nsys capture window, NVTX ranges, and a
CUDA memory-history snapshot.

The window follows megatron-core's convention: profiling starts when ``train_state.step``
(steps finished so far) equals ``profile_step_start`` and stops when it reaches
``profile_step_end``, so it covers the steps printed as ``profile_step_start + 1`` ..
``profile_step_end``. Only the global ranks in ``profile_ranks`` profile (an empty list means
rank 0).

* PyTorch profiler (``use_pytorch_profiler``): one Chrome trace per profiled rank,
  ``rank<R>_steps<A>-<B>.pt.trace.json``, in ``logger.tensorboard_dir`` when set (TensorBoard's
  profiler plugin reads it there) else in ``./torch_profile``. Each step is a ``step <N>``
  region of the trace. ``record_shapes`` / ``pytorch_profiler_collect_shapes`` record shapes,
  ``pytorch_profiler_collect_callstack`` the Python stacks.
* nsys (``use_nsys_profiler``): ``torch.cuda.profiler.start()/stop()`` around the window (run
  under ``nsys profile --capture-range=cudaProfilerApi``), with ``emit_nvtx`` for autograd ops.
* ``nvtx_ranges``: NVTX ranges for each step, megatron-core's forward / backward compute
  (through its schedule's timer hooks), the optimizer step, and megatron-core's own ranges.
* ``record_memory_history``: CUDA allocator history recorded during the window and dumped to
  ``memory_snapshot_path`` at its end (``_rank<R>`` is added when several ranks profile);
  view it at pytorch.org/memory_viz.

The CUDA-only parts print one line and do nothing on a machine without CUDA.
"""

from __future__ import annotations

import contextlib
import os

import torch

DEFAULT_TRACE_DIR = "torch_profile"


def _nvtx_wanted(prof) -> bool:
    return bool(prof is not None and prof.nvtx_ranges and torch.cuda.is_available())


@contextlib.contextmanager
def region(state, name: str, log_level: int = 1):
    """Time ``name`` with the run's megatron timers and, with ``nvtx_ranges`` on CUDA, mark it
    as an NVTX range."""
    timer = state.timers(name, log_level=log_level) if state.timers is not None else None
    nvtx = _nvtx_wanted(state.cfg.profiling)
    if nvtx:
        torch.cuda.nvtx.range_push(name)
    if timer is not None:
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.stop()
        if nvtx:
            torch.cuda.nvtx.range_pop()


class NvtxTimers:
    """megatron ``Timers`` whose timers also push/pop an NVTX range, so the schedule's own
    forward-compute / backward-compute / forward-backward hooks show up in nsys."""

    def __init__(self, timers):
        self._timers = timers

    def __call__(self, name, log_level=None):
        return _NvtxTimer(name, self._timers(name, log_level))

    def __getattr__(self, name):
        return getattr(self._timers, name)


class _NvtxTimer:
    def __init__(self, name, timer):
        self._name, self._timer = name, timer

    def start(self, barrier=False):
        torch.cuda.nvtx.range_push(self._name)
        self._timer.start(barrier=barrier)

    def stop(self, barrier=False):
        self._timer.stop(barrier=barrier)
        torch.cuda.nvtx.range_pop()

    def __getattr__(self, name):
        return getattr(self._timer, name)


def schedule_timers(state):
    """The timers object to hand megatron's schedule (``model_config.timers``)."""
    if state.timers is not None and _nvtx_wanted(state.cfg.profiling):
        from megatron.core.utils import configure_nvtx_profiling

        configure_nvtx_profiling(True)
        return NvtxTimers(state.timers)
    return state.timers


class StepProfiler:
    """Call ``before_step()`` / ``after_step()`` around each step and ``close()`` at the end."""

    def __init__(self, cfg, rank: int, say=print):
        prof = cfg.profiling
        self.prof, self.rank, self.say = prof, rank, say
        self.tensorboard_dir = cfg.logger.tensorboard_dir
        ranks = (prof.profile_ranks or [0]) if prof is not None else []
        self.several_ranks = len(ranks) > 1
        self.enabled = prof is not None and rank in ranks and (
            prof.use_pytorch_profiler or prof.use_nsys_profiler or prof.record_memory_history)
        self.cuda = torch.cuda.is_available()
        self._torch_profiler = None
        self._emit_nvtx = None
        self._recording_memory = False
        self._first_step = None
        self._step_region = None

    # ----------------------------------------------------------------- per step

    def before_step(self, step_done: int) -> None:
        """``step_done``: steps finished so far (the one about to run is ``step_done + 1``)."""
        if self.enabled and step_done == self.prof.profile_step_start:
            self._start(step_done + 1)
        step = step_done + 1
        if _nvtx_wanted(self.prof):
            torch.cuda.nvtx.range_push(f"step {step}")
        if self._torch_profiler is not None:
            self._step_region = torch.profiler.record_function(f"step {step}")
            self._step_region.__enter__()

    def after_step(self, step_done: int) -> None:
        """``step_done``: steps finished, this one included."""
        if self._step_region is not None:
            self._step_region.__exit__(None, None, None)
            self._step_region = None
        if _nvtx_wanted(self.prof):
            torch.cuda.nvtx.range_pop()
        if self._first_step is not None and step_done >= self.prof.profile_step_end:
            self._stop(step_done)

    def close(self, step_done: int) -> None:
        """End a window the run stopped inside (train_iters or an exit came first)."""
        if self._step_region is not None:
            self._step_region.__exit__(None, None, None)
            self._step_region = None
        if self._first_step is not None:
            self._stop(step_done)

    # ----------------------------------------------------------------- the window

    def _start(self, first_step: int) -> None:
        prof = self.prof
        self._first_step = first_step
        shapes = bool(prof.record_shapes or prof.pytorch_profiler_collect_shapes)
        if prof.use_pytorch_profiler:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.cuda:
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._torch_profiler = torch.profiler.profile(
                activities=activities, record_shapes=shapes,
                with_stack=bool(prof.pytorch_profiler_collect_callstack))
            self._torch_profiler.start()
        if prof.use_nsys_profiler:
            if self.cuda:
                torch.cuda.profiler.start()
                self._emit_nvtx = torch.autograd.profiler.emit_nvtx(record_shapes=shapes)
                self._emit_nvtx.__enter__()
            else:
                self.say("profiling.use_nsys_profiler: no CUDA device, so no nsys capture "
                         "range is started")
        if prof.record_memory_history:
            if self.cuda:
                torch.cuda.memory._record_memory_history(max_entries=100_000)
                self._recording_memory = True
            else:
                self.say("profiling.record_memory_history: no CUDA device, so no CUDA memory "
                         f"history is recorded and no snapshot is written to "
                         f"{self.memory_snapshot_path()}")

    def _stop(self, last_step: int) -> None:
        first, self._first_step = self._first_step, None
        if self._torch_profiler is not None:
            profiler, self._torch_profiler = self._torch_profiler, None
            profiler.stop()
            folder = self.tensorboard_dir or DEFAULT_TRACE_DIR
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"rank{self.rank}_steps{first}-{last_step}.pt.trace.json")
            tmp = f"{path}.tmp"
            profiler.export_chrome_trace(tmp)
            os.replace(tmp, path)
            self.say(f"PyTorch profiler trace of steps {first}-{last_step} (rank {self.rank}): "
                     f"{path}")
        if self._emit_nvtx is not None:
            self._emit_nvtx.__exit__(None, None, None)
            self._emit_nvtx = None
            torch.cuda.profiler.stop()
        if self._recording_memory:
            path = self.memory_snapshot_path()
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            torch.cuda.memory._dump_snapshot(f"{path}.tmp")
            os.replace(f"{path}.tmp", path)
            torch.cuda.memory._record_memory_history(enabled=None)
            self._recording_memory = False
            self.say(f"CUDA memory history of steps {first}-{last_step} (rank {self.rank}): "
                     f"{path}")

    def memory_snapshot_path(self) -> str:
        path = self.prof.memory_snapshot_path
        if self.several_ranks:
            stem, ext = os.path.splitext(path)
            path = f"{stem}_rank{self.rank}{ext}"
        return path
