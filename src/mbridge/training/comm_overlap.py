"""`megatron.bridge.training.comm_overlap`: CommOverlapConfig."""

from mbridge_config.comm_overlap import CommOverlapConfig

__all__ = ["CommOverlapConfig"]
