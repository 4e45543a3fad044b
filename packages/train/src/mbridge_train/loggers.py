"""TensorBoard and Weights & Biases writers: opened on the logging rank, closed at the end.

Both are optional extras of mbridge-train (``mbridge-train[tensorboard]``,
``mbridge-train[wandb]``). ``require_packages`` runs at setup on every rank, so a configured but
missing package fails everywhere with one line before anything is built, instead of one rank
failing later while the others wait in a collective.
"""

from __future__ import annotations

import dataclasses
import importlib
import os

from mbridge_config.errors import ConfigError

_EXTRAS = (
    # (config field that asks for it, module to import, extra of mbridge-train)
    ("tensorboard_dir", "tensorboard", "tensorboard"),
    ("wandb_project", "wandb", "wandb"),
)


def require_packages(logger_cfg) -> None:
    """One ConfigError naming the field and the pip command for each configured, missing logger."""
    problems = []
    for field, module, extra in _EXTRAS:
        if not getattr(logger_cfg, field, None):
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            problems.append((f"logger.{field}", f"is set but the {module} package is not "
                             f"installed: pip install 'mbridge-train[{extra}]'"))
    if problems:
        raise ConfigError(problems)


def open_loggers(state, logging_rank: bool) -> None:
    """Set ``state.tensorboard_logger`` / ``state.wandb_logger`` on the logging rank."""
    cfg = state.cfg
    logger_cfg = cfg.logger
    if not logging_rank:
        return
    if logger_cfg.tensorboard_dir and state.tensorboard_logger is None:
        from torch.utils.tensorboard import SummaryWriter

        os.makedirs(logger_cfg.tensorboard_dir, exist_ok=True)
        state.tensorboard_logger = SummaryWriter(log_dir=logger_cfg.tensorboard_dir,
                                                 max_queue=logger_cfg.tensorboard_queue_size)
    if logger_cfg.wandb_project and state.wandb_logger is None:
        import wandb

        save_dir = logger_cfg.wandb_save_dir or (
            os.path.join(cfg.checkpoint.save, "wandb") if cfg.checkpoint.save else None)
        if save_dir:
            os.makedirs(save_dir, exist_ok=True)
        state.wandb_logger = wandb.init(
            project=logger_cfg.wandb_project, name=logger_cfg.wandb_exp_name,
            entity=logger_cfg.wandb_entity, dir=save_dir, config=plain_config(cfg))


def close_loggers(state) -> None:
    if state.tensorboard_logger is not None:
        state.tensorboard_logger.close()
        state.tensorboard_logger = None
    if state.wandb_logger is not None:
        state.wandb_logger.finish()
        state.wandb_logger = None


def plain_config(cfg) -> dict:
    """The ConfigContainer as plain data for W&B. Sections holding live objects (the model
    provider carries bound methods once training is set up) keep only their scalar fields."""
    from mbridge_config import serialization

    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        try:
            out[f.name] = serialization.to_dict(value, f.name)
        except ConfigError:
            out[f.name] = {k: v for k, v in vars(value).items()
                           if isinstance(v, (bool, int, float, str, type(None)))}
    return out
