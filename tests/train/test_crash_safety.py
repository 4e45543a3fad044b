"""SIGKILL at seeded random moments of a training run that saves every step (synchronous and
async saves alternating), then restart, again and again: every restart resumes from the newest
complete checkpoint the tracker names, never a partial one; most_recent_k never leaves a run
without a complete checkpoint; and every step's loss, however often it was redone, equals the
uninterrupted run's. The default suite kills twice; the slow test 20 times."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from mbridge_train import checkpointing as ck

pytestmark = pytest.mark.multiproc

_STEP = re.compile(r"^ iteration\s+(\d+)/\s*\d+ .*\| lm loss: ([0-9.]+)")
_LOADED = re.compile(r"^ loaded checkpoint \S+ \(iteration (\d+)\)")


def _command(root, iters: int, async_save: bool) -> list[str]:
    return [sys.executable, "-m", "mbridge", "pretrain", "tiny.gpt_tiny",
            f"train.train_iters={iters}", "train.eval_interval=null", "logger.log_interval=1",
            f"checkpoint.save={root}", f"checkpoint.load={root}", "checkpoint.save_interval=1",
            "checkpoint.most_recent_k=2", f"checkpoint.async_save={str(async_save).lower()}"]


class _Run:
    """One training process whose output lines (stdout and stderr) are collected as they
    come."""

    def __init__(self, command):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,  # errors in the lines
                                        stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.first_step = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if _STEP.match(line):
                self.first_step.set()
        self.first_step.set()

    def kill_after_first_step(self, delay: float) -> bool:
        """SIGKILL ``delay`` s after the first step line; False if the run ended first."""
        self.first_step.wait(timeout=600)
        time.sleep(delay)
        if self.process.poll() is not None:
            return False
        self.process.send_signal(signal.SIGKILL)
        self.finish()
        return True

    def finish(self) -> int:
        code = self.process.wait(timeout=600)
        self.reader.join(timeout=60)
        return code

    def steps(self) -> dict[int, str]:
        return {int(m[1]): m[2] for m in map(_STEP.match, self.lines) if m}

    def loaded(self) -> int | None:
        found = [int(m[1]) for m in map(_LOADED.match, self.lines) if m]
        return found[0] if found else None


_references: dict[int, dict[int, str]] = {}


def _reference(tmp_path_factory, iters: int) -> dict[int, str]:
    """The uninterrupted run's loss per step (as printed)."""
    if iters not in _references:
        run = _Run(_command(tmp_path_factory.mktemp("straight"), iters, async_save=False))
        assert run.finish() == 0, run.lines[-5:]
        _references[iters] = run.steps()
        assert sorted(_references[iters]) == list(range(1, iters + 1))
    return _references[iters]


def _kill_and_restart(root, reference, kills: int, seed: int):
    iters = len(reference)
    rng = random.Random(seed)
    killed = during_save = 0
    tracked = None
    while killed < kills:
        run = _Run(_command(root, iters, async_save=killed % 2 == 1))
        if not run.kill_after_first_step(rng.uniform(0.0, 1.0)):
            break  # it finished first: nothing left to interrupt
        killed += 1
        assert run.loaded() == tracked  # resumed from what the tracker named at the kill
        for step, loss in run.steps().items():
            assert loss == reference[step], (step, run.lines[-5:])
        tracked = ck.read_tracker(str(root))
        finished = [i for i in ck.saved_iterations(str(root)) if i <= (tracked or 0)]
        if tracked is not None:
            ck.find_checkpoint(str(root))  # complete, or CheckpointError
            assert tracked in finished  # pruning (most_recent_k=2) kept it
        during_save += any(i > (tracked or 0) for i in ck.saved_iterations(str(root)))
    final = _Run(_command(root, iters, async_save=False))
    assert final.finish() == 0, final.lines[-5:]
    assert final.loaded() == tracked
    for step, loss in final.steps().items():
        assert loss == reference[step], step
    assert ck.read_tracker(str(root)) == iters
    return killed, during_save


def test_sigkill_at_random_moments_never_loads_a_partial_checkpoint(tmp_path,
                                                                   tmp_path_factory):
    reference = _reference(tmp_path_factory, iters=40)  # more than two kills can reach
    killed, _ = _kill_and_restart(tmp_path, reference, kills=2, seed=0)
    assert killed == 2  # one synchronous save run, one async


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 22 restarts of a training process, ~10-20 s each
def test_sigkill_20_times_sync_and_async(tmp_path, tmp_path_factory):
    reference = _reference(tmp_path_factory, iters=250)
    killed, during_save = _kill_and_restart(tmp_path, reference, kills=20, seed=1)
    assert killed == 20
    assert during_save >= killed // 4  # many kills landed inside a save
