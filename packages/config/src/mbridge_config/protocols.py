"""What ConfigContainer needs of a model provider and a PEFT method, without importing them.

mbridge-config sits below mbridge-models and mbridge-peft, so the container types those fields by
these small structural protocols instead of the concrete classes.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ModelProviderProtocol(Protocol):
    """A model provider: a megatron TransformerConfig plus what is needed to build the model."""

    seq_length: int
    vocab_size: int | None
    tensor_model_parallel_size: int
    pipeline_model_parallel_size: int
    context_parallel_size: int

    def provide(self, pre_process: bool | None = None, post_process: bool | None = None,
                vp_stage: int | None = None) -> Any: ...


@runtime_checkable
class PEFTProtocol(Protocol):
    """A parameter-efficient fine-tuning transform applied to the built model (chunks)."""

    def __call__(self, model: Any, training: bool = True) -> Any: ...
