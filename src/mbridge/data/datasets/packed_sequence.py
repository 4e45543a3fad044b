"""`megatron.bridge.data.datasets.packed_sequence`: PackedSequenceSpecs."""

from mbridge_config.data import PackedSequenceSpecs

__all__ = ["PackedSequenceSpecs"]
