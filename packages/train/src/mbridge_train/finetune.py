"""finetune(cfg, forward_step_func): supervised (optionally PEFT) fine-tuning of a trained model.

Same loop as pretrain; the weights start from ``checkpoint.pretrained_checkpoint`` (unless a
full fine-tune is being resumed from ``checkpoint.load``) and ``cfg.peft``, when set, wraps
the model before the optimizer sees it, so only adapters train. A PEFT run always loads its base
from ``pretrained_checkpoint``; its own checkpoints (and resumes) hold the adapters only.
"""

from __future__ import annotations

from typing import Callable

from mbridge_config.errors import ConfigError
from mbridge_train.training import Run, setup, teardown, train


def finetune(cfg, forward_step_func: Callable) -> Run:
    checkpoint = cfg.checkpoint
    if cfg.peft is not None and not (checkpoint.pretrained_checkpoint or checkpoint.load):
        raise ConfigError("PEFT fine-tunes a trained model: set checkpoint.pretrained_checkpoint "
                          "(or checkpoint.load to resume)", field="checkpoint.pretrained_checkpoint")
    run = setup(cfg, training_mode="finetune")
    try:
        return train(run, forward_step_func)
    finally:
        teardown()
