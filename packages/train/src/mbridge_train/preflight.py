"""Checks and switches that run at setup on every rank, before anything is built: optional
logger packages, DeepEP's hardware and library, TP communication overlap, and megatron-core's
experimental flag."""

from __future__ import annotations

from mbridge_train.deepep import validate_deepep
from mbridge_train.loggers import require_packages


def run(cfg) -> None:
    require_packages(cfg.logger)
    validate_deepep(cfg.model)
    refuse_tp_comm_overlap(cfg.comm_overlap)
    if getattr(cfg.dist, "enable_megatron_core_experimental", False):
        from megatron.core.config import set_experimental_flag

        set_experimental_flag(True)


def refuse_tp_comm_overlap(comm_overlap) -> None:
    """TP overlap runs inside Transformer Engine's userbuffer GEMMs, which need a per-run
    communicator set-up that mbridge does not do yet: refuse rather than silently not overlap."""
    if comm_overlap is not None and comm_overlap.tp_comm_overlap:
        from mbridge_config.errors import ConfigError

        raise ConfigError("is not supported yet: it needs Transformer Engine's userbuffers, which "
                          "mbridge does not initialise; leave it False (DP/PP overlap work)",
                          field="comm_overlap.tp_comm_overlap")
