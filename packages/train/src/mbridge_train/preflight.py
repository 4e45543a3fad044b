"""Checks of the environment (not of the config: those are ``ConfigContainer.validate``'s) and
switches that run at setup on every rank, before anything is built: optional logger packages,
DeepEP's hardware and library, and megatron-core's experimental flag."""

from __future__ import annotations

from mbridge_train.deepep import validate_deepep
from mbridge_train.loggers import require_packages


def run(cfg) -> None:
    require_packages(cfg.logger)
    validate_deepep(cfg.model)
    if getattr(cfg.dist, "enable_megatron_core_experimental", False):
        from megatron.core.config import set_experimental_flag

        set_experimental_flag(True)

