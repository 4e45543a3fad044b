"""The hang watchdog (``ft.enable_ft_package``): its rule on a fake clock, a rank sleeping inside
a collective ended with every thread's stack and a non-zero status, and, under
``torchrun --max-restarts=1``, the restarted job resuming from its last checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from multirank import RankFailure, free_port, run_ranks

import launch_script
import tiny_run
from mbridge_train.watchdog import HANG_EXIT_CODE, MIN_STEP_TIMES, HangWatchdog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _watchdog(clock, **kwargs):
    return HangWatchdog(0, kwargs.pop("timeout_s", 60.0), clock=clock, start=False, **kwargs)


def test_no_progress_for_the_timeout_is_a_hang_and_each_progress_resets_it():
    clock = Clock()
    dog = _watchdog(clock, timeout_s=30.0)
    dog.step_started(1)
    dog.step_finished(0.5)
    clock.now += 29
    assert dog.verdict(clock.now) is None
    dog.progress()  # an evaluation or a save finished
    clock.now += 29
    assert dog.verdict(clock.now) is None
    dog.step_started(7)
    clock.now += 31
    assert dog.verdict(clock.now) == ("no progress for 31.0 s (in step 7), above "
                                      "ft.hang_timeout_s=30")


def test_until_the_first_step_has_finished_the_initial_timeout_applies():
    clock = Clock()
    dog = _watchdog(clock, timeout_s=30.0, initial_timeout_s=300.0)
    dog.step_started(1)  # warm-up, compilation, the first batches
    clock.now += 299
    assert dog.verdict(clock.now) is None
    clock.now += 2
    assert dog.verdict(clock.now) == ("no progress for 301.0 s (in step 1), above "
                                      "ft.initial_hang_timeout_s=300")
    dog.step_finished(301.0)
    clock.now += 31
    assert dog.verdict(clock.now).endswith("above ft.hang_timeout_s=30")


@given(st.lists(st.floats(0.01, 5.0), min_size=1, max_size=12), st.floats(0.0, 100.0),
       st.floats(1.5, 20.0), st.floats(0.0, 3.0))
def test_a_step_longer_than_the_factor_times_the_median_is_a_hang_once_steps_are_known(
        times, elapsed, factor, floor):
    import statistics

    clock = Clock()
    dog = _watchdog(clock, timeout_s=1e9, step_time_factor=factor, min_step_timeout_s=floor)
    for index, seconds in enumerate(times):
        dog.step_started(index + 1)
        clock.now += seconds
        dog.step_finished(seconds)
    dog.step_started(len(times) + 1)
    clock.now += elapsed
    known = times[1:]  # the process's first step (warm-up) is not a reference
    expected = len(known) >= MIN_STEP_TIMES and \
        elapsed > max(factor * statistics.median(known), floor)
    verdict = dog.verdict(clock.now)
    assert (verdict is not None) == expected
    if verdict:
        assert verdict.startswith(f"step {len(times) + 1} has run for ")
    dog.step_finished(elapsed)  # between steps only the timeout applies
    clock.now += 1e6
    assert dog.verdict(clock.now) is None or dog.verdict(clock.now).startswith("no progress")


def test_the_watchdog_is_off_unless_ft_asks_for_it():
    from mbridge.training.config import FaultToleranceConfig

    assert not isinstance(HangWatchdog.from_config(None, 0), HangWatchdog)
    assert not isinstance(HangWatchdog.from_config(FaultToleranceConfig(), 0), HangWatchdog)
    on = HangWatchdog.from_config(FaultToleranceConfig(enable_ft_package=True), 0)
    try:
        assert isinstance(on, HangWatchdog) and on.step_time_factor is None
    finally:
        on.stop()


# ----------------------------------------------------------------------------- a hung rank


@pytest.fixture(scope="module")
def _warm():
    tiny_run.preload()


def _hung_run(rank, world, tmp):
    from mbridge.training.gpt_step import forward_step
    from mbridge_config import FaultToleranceConfig

    # The watchdog writes to fd 2 (whatever sys.stderr is): give each rank a file of its own.
    log = os.open(os.path.join(tmp, f"stderr{rank}.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.dup2(log, 2)
    launch_script.hang_in_step(3)
    cfg = tiny_run.config(train=dict(train_iters=6))
    cfg.ft = FaultToleranceConfig(enable_ft_package=True, hang_timeout_s=3.0,
                                  initial_hang_timeout_s=120.0)
    tiny_run.pretrain_captured(cfg, forward_step)


@pytest.mark.multiproc
def test_a_rank_sleeping_inside_a_collective_dumps_its_stacks_and_exits(tmp_path, _warm):
    with pytest.raises(RankFailure) as info:
        run_ranks(_hung_run, 2, str(tmp_path), timeout=120)
    report = str(info.value)
    assert f"--- rank 1 (died) ---\nexited with code {HANG_EXIT_CODE}" in report
    log = (tmp_path / "stderr1.txt").read_text()
    assert f"mbridge: hang watchdog: rank 1: no progress for " in log
    assert f"(in step 3), above ft.hang_timeout_s=3; the Python stacks of this rank's threads " \
           f"follow, then it exits with status {HANG_EXIT_CODE}" in log
    # faulthandler's dump: the watchdog thread and the main thread, stuck where it sleeps.
    assert "Current thread" in log and "Thread 0x" in log
    stack = log[log.index("Thread 0x"):]
    for frame in ("in sleepy_gather", "step_checks.py", "in train_step", "in train"):
        assert frame in stack, frame
    # Rank 0 waited in the same collective: its own watchdog, or the lost peer, ended it.
    assert "--- rank 0 " in report


# ----------------------------------------------------------------------------- torchrun


@pytest.mark.slow
@pytest.mark.multiproc
def test_under_torchrun_a_hung_job_restarts_and_resumes_from_its_last_checkpoint(tmp_path, _warm):
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    overrides = [f"checkpoint.save={ckpt}", f"checkpoint.load={ckpt}",
                 "checkpoint.save_interval=2", "ft.enable_ft_package=true",
                 "ft.hang_timeout_s=10", "ft.initial_hang_timeout_s=300"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
               MBRIDGE_TEST_HANG_MARKER=str(tmp_path / "hung"))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--max-restarts=1",
         "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}",
         str(Path(launch_script.__file__)), str(out),
         *overrides],
        env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-6000:]
    assert (tmp_path / "hung").exists()
    assert "mbridge: hang watchdog: rank 1: no progress for " in done.stderr
    assert "in sleepy_gather" in done.stderr  # the stacks were dumped
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    reference = run_ranks(_reference_losses, 2)
    for result in results:
        assert result["env"]["TORCHELASTIC_RESTART_COUNT"] == "1"
        assert [h["step"] for h in result["history"] if "split" not in h] == [3, 4]
        torch.testing.assert_close(launch_script.train_losses(result["history"]),
                                   reference[0][2:], rtol=1e-6, atol=0)


def _reference_losses(rank, world):
    _, history = launch_script.train([])
    return launch_script.train_losses(history)
