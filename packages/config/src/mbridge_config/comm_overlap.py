"""Communication/computation overlap settings, pushed into the model and DDP configs."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(kw_only=True)
class CommOverlapConfig:
    """None means "leave the model's / DDP config's own value"; a value overrides it."""

    tp_comm_overlap: bool = False
    """Overlap tensor-parallel communication with GEMMs (Transformer Engine userbuffers)."""
    tp_comm_overlap_cfg: dict[str, Any] | None = None
    tp_comm_bootstrap_backend: str | None = None
    overlap_p2p_comm: bool | None = None
    batch_p2p_comm: bool | None = None
    overlap_grad_reduce: bool | None = None
    overlap_param_gather: bool | None = None
    overlap_param_gather_with_optimizer_step: bool | None = None
    align_param_gather: bool | None = None
    bucket_size: int | None = None
    defer_embedding_wgrad_compute: bool | None = None
    wgrad_deferral_limit: int | None = None
    data_parallel_size: int | None = None

    def setup(self, *configs: Any) -> None:
        """Copy every set value onto each config that has a field of that name."""
        for config in configs:
            if config is None:
                continue
            for f in fields(self):
                value = getattr(self, f.name)
                if value is not None and hasattr(config, f.name):
                    setattr(config, f.name, value)
