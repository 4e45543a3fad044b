"""ProfilingConfig in the loop: the PyTorch profiler traces only its window on its ranks; the
CUDA-only modes say so on a CPU and carry on; on CUDA the memory snapshot is written."""

from __future__ import annotations

import json
import pickle
import types

import pytest
import torch
from multirank import run_ranks

import tiny_run


@pytest.fixture(scope="module", autouse=True)
def _warm():
    tiny_run.preload()


def _profiled_run(rank, world, tmp, profiling):
    cfg = tiny_run.config(train=dict(train_iters=4), logger=dict(tensorboard_dir=tmp),
                          profiling=profiling)
    _, text = tiny_run.pretrain_captured(cfg)
    return text


def _step_regions(path) -> set[str]:
    events = json.loads(path.read_text())["traceEvents"]
    return {e["name"] for e in events if e.get("name", "").startswith("step ")}


@pytest.mark.multiproc
def test_pytorch_profiler_traces_only_its_window_and_ranks(tmp_path):
    profiling = dict(use_pytorch_profiler=True, profile_step_start=1, profile_step_end=3,
                     profile_ranks=[1], record_shapes=True)
    texts = run_ranks(_profiled_run, 2, str(tmp_path), profiling)
    traces = sorted(p.name for p in tmp_path.glob("*.pt.trace.json"))
    assert traces == ["rank1_steps2-3.pt.trace.json"]
    trace = tmp_path / traces[0]
    assert _step_regions(trace) == {"step 2", "step 3"}
    events = json.loads(trace.read_text())["traceEvents"]
    assert any("Input Dims" in e.get("args", {}) for e in events)  # record_shapes
    assert "rank1_steps2-3.pt.trace.json" in texts[1] and "PyTorch profiler" not in texts[0]


@pytest.mark.multiproc
def test_window_cut_short_by_the_end_of_training_still_writes(tmp_path):
    profiling = dict(use_pytorch_profiler=True, profile_step_start=2, profile_step_end=10)
    run_ranks(_profiled_run, 1, str(tmp_path), profiling)
    (trace,) = tmp_path.glob("*.pt.trace.json")
    assert trace.name == "rank0_steps3-4.pt.trace.json"  # empty profile_ranks: rank 0
    assert _step_regions(trace) == {"step 3", "step 4"}


@pytest.mark.multiproc
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU message")
def test_cuda_only_modes_say_so_on_cpu(tmp_path):
    snapshot = tmp_path / "snap.pickle"
    profiling = dict(use_nsys_profiler=True, nvtx_ranges=True, record_memory_history=True,
                     memory_snapshot_path=str(snapshot), profile_step_start=1,
                     profile_step_end=2)
    (text,) = run_ranks(_profiled_run, 1, str(tmp_path), profiling)
    lines = text.splitlines()
    assert lines.count("profiling.record_memory_history: no CUDA device, so no CUDA memory "
                       f"history is recorded and no snapshot is written to {snapshot}") == 1
    assert lines.count("profiling.use_nsys_profiler: no CUDA device, so no nsys capture range "
                       "is started") == 1
    assert sum(l.startswith(" iteration") for l in lines) == 4  # training carried on
    assert not snapshot.exists()


def _profiling_cfg(tmp_path, **fields):
    from mbridge_config import LoggerConfig, ProfilingConfig

    return types.SimpleNamespace(profiling=ProfilingConfig(**fields),
                                 logger=LoggerConfig(tensorboard_dir=str(tmp_path)))


@pytest.mark.gpu
def test_memory_snapshot_is_dumped_at_the_window_end(tmp_path):
    from mbridge_train.profiling import StepProfiler

    path = tmp_path / "mem" / "snapshot.pickle"
    cfg = _profiling_cfg(tmp_path, record_memory_history=True, memory_snapshot_path=str(path),
                         profile_step_start=0, profile_step_end=2, nvtx_ranges=True)
    profiler = StepProfiler(cfg, rank=0, say=lambda line: None)
    kept = []
    for step in range(3):
        profiler.before_step(step)
        kept.append(torch.randn(256, 256, device="cuda") @ torch.randn(256, 256, device="cuda"))
        profiler.after_step(step + 1)
        assert path.exists() == (step + 1 >= 2)
    snapshot = pickle.loads(path.read_bytes())
    assert snapshot["segments"] and "device_traces" in snapshot


@pytest.mark.gpu
def test_nsys_window_and_nvtx_ranges_run_on_cuda(tmp_path):
    from mbridge_train.profiling import StepProfiler

    cfg = _profiling_cfg(tmp_path, use_nsys_profiler=True, nvtx_ranges=True, record_shapes=True,
                         profile_step_start=1, profile_step_end=2)
    said = []
    profiler = StepProfiler(cfg, rank=0, say=said.append)
    for step in range(3):
        profiler.before_step(step)
        torch.ones(8, device="cuda").sum().item()
        profiler.after_step(step + 1)
    profiler.close(3)
    assert said == [] and profiler._emit_nvtx is None
