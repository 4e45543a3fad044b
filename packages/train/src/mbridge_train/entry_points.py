"""pretrain(cfg, forward_step_func) and finetune(cfg, forward_step_func): the two entry points.

Both run the same loop (``training``); they differ in where the weights start. One module for
both, and no submodule named like either, so ``from mbridge_train import pretrain`` always
yields the function whatever was imported before.
"""

from __future__ import annotations

from typing import Callable

from mbridge_config import quiet
from mbridge_train.training import Run, setup, teardown, train
from mbridge_train.user_errors import install_excepthook


def pretrain(cfg, forward_step_func: Callable) -> Run:
    """Set up from ``cfg`` (a ConfigContainer), train, evaluate, save; returns the finished Run
    (its ``history`` holds every logged step and evaluation)."""
    return _run(cfg, forward_step_func, "pretrain")


def finetune(cfg, forward_step_func: Callable) -> Run:
    """Supervised (optionally PEFT) fine-tuning of a trained model: the weights start from
    ``checkpoint.pretrained_checkpoint`` (unless a full fine-tune resumes from
    ``checkpoint.load``), and ``cfg.peft``, when set, wraps the model before the optimizer sees
    it, so only adapters train. A PEFT run always loads its base from ``pretrained_checkpoint``
    (validate() requires it); its own checkpoints (and resumes) hold the adapters only."""
    return _run(cfg, forward_step_func, "finetune")


def _run(cfg, forward_step_func: Callable, mode: str) -> Run:
    install_excepthook()  # a bad config / file / checkpoint ends the script in one line
    quiet.install()  # dependency warnings that apply shown once, by rank 0
    run = setup(cfg, training_mode=mode)
    try:
        return train(run, forward_step_func)
    finally:
        teardown()
