"""The hang watchdog (``ft.enable_ft_package``): fault tolerance without an extra service.

A hung rank (a collective that never completes, a dead peer, a stuck data loader) blocks the
job forever. Each rank runs a background thread that the loop tells about its progress (step
start and end, each evaluation and save). When there has been no progress for
``ft.hang_timeout_s`` seconds (``ft.initial_hang_timeout_s`` until the process's first step
has finished: warm-up, compilation and the first batches take longer) or, with
``ft.calc_ft_timeouts``, a training step runs longer than ``ft.step_time_factor`` x the median
of the previous step times (never less than ``ft.min_step_timeout_s``), the thread writes one
line saying why, then every thread's Python stack (faulthandler) to the process's stderr, and
ends the process with HANG_EXIT_CODE through ``os._exit``: no cleanup that a stuck collective
could block. A restarting launcher (``torchrun --max-restarts=N``) then restarts the job,
which resumes from its last complete checkpoint (``checkpoint.load``).
"""

from __future__ import annotations

import faulthandler
import os
import statistics
import threading
import time
from collections import deque
from typing import Callable

HANG_EXIT_CODE = 75
"""The exit status of a rank ended by the watchdog (EX_TEMPFAIL: try again)."""
MIN_STEP_TIMES = 3
"""Finished steps (the process's first excluded: it includes warm-up) before the step rule."""
STEP_WINDOW = 100


class HangWatchdog:
    """One rank's watchdog thread; ``verdict`` is the rule, the thread only applies it."""

    def __init__(self, rank: int, timeout_s: float, *, initial_timeout_s: float | None = None,
                 step_time_factor: float | None = None, min_step_timeout_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, start: bool = True):
        self.rank, self.timeout_s = rank, float(timeout_s)
        self.initial_timeout_s = float(initial_timeout_s if initial_timeout_s is not None
                                       else timeout_s)
        self.step_time_factor, self.min_step_timeout_s = step_time_factor, min_step_timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last_progress = clock()
        self._step: int | None = None
        self._step_began = 0.0
        self._finished = 0
        self._times: deque[float] = deque(maxlen=STEP_WINDOW)
        self._stop = threading.Event()
        self._thread = None
        if start:
            self._thread = threading.Thread(target=self._watch, name="mbridge-hang-watchdog",
                                            daemon=True)
            self._thread.start()

    @classmethod
    def from_config(cls, ft, rank: int) -> "HangWatchdog | _Off":
        if ft is None or not ft.enable_ft_package:
            return _Off()
        return cls(rank, ft.hang_timeout_s, initial_timeout_s=ft.initial_hang_timeout_s,
                   step_time_factor=ft.step_time_factor if ft.calc_ft_timeouts else None,
                   min_step_timeout_s=ft.min_step_timeout_s)

    # ------------------------------------------------------------------ what the loop says

    def step_started(self, step: int) -> None:
        with self._lock:
            self._step, self._step_began = step, self.clock()
            self._last_progress = self._step_began

    def step_finished(self, seconds: float) -> None:
        with self._lock:
            self._finished += 1
            if self._finished > 1:
                self._times.append(seconds)
            self._step, self._last_progress = None, self.clock()

    def progress(self) -> None:
        with self._lock:
            self._last_progress = self.clock()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # ------------------------------------------------------------------ the rule

    def verdict(self, now: float) -> str | None:
        """Why this rank counts as hung at time ``now``, or None."""
        with self._lock:
            idle = now - self._last_progress
            where = f" (in step {self._step})" if self._step is not None else ""
            timeout, name = (self.timeout_s, "hang_timeout_s") if self._finished else \
                (self.initial_timeout_s, "initial_hang_timeout_s")
            if idle > timeout:
                return f"no progress for {idle:.1f} s{where}, above ft.{name}={timeout:g}"
            if self._step is None or self.step_time_factor is None or \
                    len(self._times) < MIN_STEP_TIMES:
                return None
            median = statistics.median(self._times)
            limit = max(self.step_time_factor * median, self.min_step_timeout_s)
            elapsed = now - self._step_began
            if elapsed > limit:
                return (f"step {self._step} has run for {elapsed:.1f} s, above "
                        f"ft.step_time_factor {self.step_time_factor:g} x the median step time "
                        f"{median:.3g} s (and ft.min_step_timeout_s={self.min_step_timeout_s:g})")
            return None

    def _watch(self) -> None:
        poll = min(1.0, self.timeout_s / 10, self.initial_timeout_s / 10,
                   self.min_step_timeout_s / 10)
        while not self._stop.wait(poll):
            reason = self.verdict(self.clock())
            if reason is not None and not self._stop.is_set():
                fire(self.rank, reason)


def fire(rank: int, reason: str) -> None:
    """Say why, dump every thread's stack to fd 2 (whatever sys.stderr became) and exit."""
    line = (f"mbridge: hang watchdog: rank {rank}: {reason}; the Python stacks of this rank's "
            f"threads follow, then it exits with status {HANG_EXIT_CODE}\n")
    try:
        os.write(2, line.encode())
        faulthandler.dump_traceback(file=2, all_threads=True)
    finally:
        os._exit(HANG_EXIT_CODE)


class _Off:
    """The watchdog when ``ft`` does not ask for it: every call does nothing."""

    def step_started(self, step: int) -> None:
        pass

    def step_finished(self, seconds: float) -> None:
        pass

    def progress(self) -> None:
        pass

    def stop(self) -> None:
        pass
