"""pretrain(cfg, forward_step_func): train a model from scratch (or resume) on GPT data."""

from __future__ import annotations

from typing import Callable

from mbridge_train.training import Run, setup, teardown, train


def pretrain(cfg, forward_step_func: Callable) -> Run:
    """Set up from ``cfg`` (a ConfigContainer), train, evaluate, save; returns the finished Run
    (its ``history`` holds every logged step and evaluation)."""
    run = setup(cfg, training_mode="pretrain")
    try:
        return train(run, forward_step_func)
    finally:
        teardown()
