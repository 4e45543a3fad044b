"""``train.manual_gc``: Python's threshold-triggered collector off for the run, collections at
fixed steps instead.

A collection of a large process takes long enough to stall one rank while the others wait in a
collective; collecting at the same step everywhere aligns those stalls. With ``manual_gc``,
``manual_gc_interval`` > 0 collects every that many steps and ``manual_gc_eval`` (default on)
collects before and after each evaluation.
"""

from __future__ import annotations

import contextlib
import gc


class ManualGC:
    def __init__(self, train_cfg):
        self.on = bool(train_cfg.manual_gc)
        self.interval = train_cfg.manual_gc_interval or 0
        self.around_eval = bool(train_cfg.manual_gc_eval)
        self._was_enabled = gc.isenabled()
        if self.on:
            gc.disable()

    def after_step(self, step: int) -> None:
        if self.on and self.interval > 0 and step % self.interval == 0:
            gc.collect()

    @contextlib.contextmanager
    def evaluation(self):
        if self.on and self.around_eval:
            gc.collect()
        try:
            yield
        finally:
            if self.on and self.around_eval:
                gc.collect()

    def close(self) -> None:
        if self.on and self._was_enabled:
            gc.enable()
