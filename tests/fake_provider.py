"""Stand-ins satisfying mbridge-config's protocols, for config tests that need no real model."""

from dataclasses import dataclass

import torch


@dataclass(kw_only=True)
class FakeModelProvider:
    seq_length: int = 128
    vocab_size: int | None = None
    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    context_parallel_size: int = 1
    sequence_parallel: bool = False
    fp16: bool = False
    bf16: bool = False
    params_dtype: torch.dtype = torch.float32
    pipeline_dtype: torch.dtype | None = None
    overlap_p2p_comm: bool = False

    def provide(self, pre_process=None, post_process=None, vp_stage=None):
        raise NotImplementedError("config tests never build the model")


@dataclass(kw_only=True)
class FakePEFT:
    dim: int = 8

    def __call__(self, model, training=True):
        return model
