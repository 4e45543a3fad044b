"""What every model provider shares: deferred validation, parallel setup, distributed wrapping.

A provider is a megatron-core TransformerConfig with the extra fields needed to build a model.
megatron-core validates a TransformerConfig in ``__post_init__``; a provider defers that to
``finalize()`` so presets can be created first and edited afterwards (``model.tensor_model_
parallel_size = 8``), exactly as Megatron Bridge's providers behave.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from mbridge_config.errors import ConfigError
from mbridge_config.vocab import padded_vocab_size
from mbridge_models.runtime import training_device


class ModelProviderMixin:
    """Mixed into provider dataclasses that subclass megatron's TransformerConfig."""

    _finalized = False

    def __post_init__(self) -> None:  # validation waits for finalize()
        pass

    def finalize(self):
        """Validate and derive megatron's dependent fields (ffn size, kv channels, ...) once."""
        if self._finalized:
            return self
        problems = self.parallelism_problems()
        if problems:
            raise ConfigError(problems)
        if self.pipeline_model_parallel_size > 1 and self.pipeline_dtype is None:
            self.pipeline_dtype = self.params_dtype  # what travels between stages
        try:
            super(ModelProviderMixin, self).__post_init__()
        except (AssertionError, ValueError) as error:
            raise ConfigError(f"{type(self).__name__}: {error}", field="model") from error
        self._finalized = True
        return self

    # ------------------------------------------------------------------ building blocks

    def padded_vocab_size(self) -> int:
        """The embedding rows: vocab_size, padded when it came from the tokenizer."""
        if self.vocab_size is None:
            raise ConfigError("is None: set it, or build through ConfigContainer with a tokenizer "
                              "so it is taken from the tokenizer", field="model.vocab_size")
        if not self.should_pad_vocab:
            return self.vocab_size
        return padded_vocab_size(self.vocab_size, self.make_vocab_size_divisible_by,
                                 self.tensor_model_parallel_size)

    @staticmethod
    def pipeline_ends(pre_process, post_process, vp_stage):
        """Whether this rank's (virtual) stage holds the embedding / the output layer."""
        from megatron.core import parallel_state

        if pre_process is None:
            pre_process = parallel_state.is_pipeline_first_stage(ignore_virtual=False,
                                                                 vp_stage=vp_stage)
        if post_process is None:
            post_process = parallel_state.is_pipeline_last_stage(ignore_virtual=False,
                                                                 vp_stage=vp_stage)
        return pre_process, post_process

    # ------------------------------------------------------------------ checks

    def parallelism_problems(self) -> list[tuple[str, str]]:
        """(field, message) for every layout megatron-core would reject deep inside."""
        problems = []
        tp = self.tensor_model_parallel_size
        heads = self.num_attention_heads
        if heads and heads % tp:
            problems.append(("model.tensor_model_parallel_size",
                             f"{tp} does not divide num_attention_heads={heads}"))
        groups = self.num_query_groups
        if groups and groups % tp:
            problems.append(("model.tensor_model_parallel_size",
                             f"{tp} does not divide num_query_groups={groups}"))
        if groups and heads and heads % groups:
            problems.append(("model.num_query_groups",
                             f"{groups} does not divide num_attention_heads={heads}"))
        if heads and self.kv_channels is None and self.hidden_size % heads:
            problems.append(("model.hidden_size", f"{self.hidden_size} is not divisible by "
                             f"num_attention_heads={heads} (or set kv_channels)"))
        experts = self.num_moe_experts
        if experts and experts % self.expert_model_parallel_size:
            problems.append(("model.expert_model_parallel_size",
                             f"{self.expert_model_parallel_size} does not divide "
                             f"num_moe_experts={experts}"))
        if self.sequence_parallel and tp == 1:
            problems.append(("model.sequence_parallel",
                             "needs tensor_model_parallel_size > 1"))
        problems += self._pipeline_problems()
        return problems

    def _pipeline_problems(self) -> list[tuple[str, str]]:
        pp = self.pipeline_model_parallel_size
        vpp = self.virtual_pipeline_model_parallel_size or 1
        if self.pipeline_model_parallel_layout is not None:
            return []  # megatron-core validates explicit layouts itself
        layers = self.num_layers
        stages = pp
        first, last = (self.num_layers_in_first_pipeline_stage,
                       self.num_layers_in_last_pipeline_stage)
        for count in (first, last):
            if count is not None:
                layers -= count
                stages -= 1
        if pp > 1 and (first is not None or last is not None):
            if stages > 0 and layers % (stages * vpp):
                return [("model.num_layers", f"the {layers} layers left after the first/last "
                         f"stages do not split evenly over {stages} middle stages x {vpp} "
                         f"virtual stages")]
            return []
        extra = int(bool(self.account_for_embedding_in_pipeline_split)) + int(
            bool(self.account_for_loss_in_pipeline_split))
        if (layers + extra) % (pp * vpp):
            return [("model.num_layers",
                     f"{layers} layers{' (+ embedding/loss)' if extra else ''} do not split "
                     f"evenly over pipeline_model_parallel_size={pp} x "
                     f"virtual_pipeline_model_parallel_size={vpp} stages")]
        return []

    # ------------------------------------------------------------------ parallel setup

    def initialize_model_parallel(self, seed: int | None = None, **kwargs: Any) -> None:
        """Create megatron's process groups for this provider's layout (torch.distributed must
        be initialised); seed the model-parallel RNG streams when ``seed`` is given."""
        from megatron.core import parallel_state
        from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

        if not torch.distributed.is_initialized():
            raise RuntimeError("initialize_model_parallel: call torch.distributed."
                               "init_process_group first (torchrun sets up the environment)")
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=self.tensor_model_parallel_size,
            pipeline_model_parallel_size=self.pipeline_model_parallel_size,
            virtual_pipeline_model_parallel_size=self.virtual_pipeline_model_parallel_size,
            context_parallel_size=self.context_parallel_size,
            expert_model_parallel_size=self.expert_model_parallel_size,
            expert_tensor_parallel_size=self.expert_tensor_parallel_size,
            pipeline_model_parallel_comm_backend=self.pipeline_model_parallel_comm_backend,
            **kwargs)
        if seed is not None:
            torch.manual_seed(seed)
            model_parallel_cuda_manual_seed(seed)

    def provide_distributed_model(
        self,
        ddp_config=None,
        wrap_with_ddp: bool = True,
        data_parallel_random_init: bool = True,
        use_cpu_initialization: bool | None = None,
        pre_wrap_hook: Callable[[list], list] | None = None,
        post_wrap_hook: Callable[[list], list] | None = None,
    ) -> list:
        """One model chunk per virtual pipeline stage, on this rank's device, in the training
        precision, wrapped in megatron-core's DistributedDataParallel (when ``wrap_with_ddp``).

        ``pre_wrap_hook`` runs on the bare chunks before wrapping (where PEFT is applied), and
        ``post_wrap_hook`` on the wrapped ones.
        """
        from megatron.core import parallel_state
        from megatron.core.distributed import (DistributedDataParallel,
                                               DistributedDataParallelConfig)
        from megatron.core.transformer.module import Float16Module

        if not parallel_state.model_parallel_is_initialized():
            raise RuntimeError("provide_distributed_model: model parallel state is not "
                               "initialised; call provider.initialize_model_parallel() first")
        if use_cpu_initialization is not None:
            self.use_cpu_initialization = use_cpu_initialization
        self.finalize()
        stages = self.virtual_pipeline_model_parallel_size or 1
        chunks = [self.provide(vp_stage=i if stages > 1 else None) for i in range(stages)]
        device = training_device()
        chunks = [chunk.to(device) for chunk in chunks]
        if pre_wrap_hook is not None:
            chunks = pre_wrap_hook(chunks) or chunks
        if self.fp16 or self.bf16:
            chunks = [Float16Module(self, chunk) for chunk in chunks]
        if wrap_with_ddp:
            ddp_config = ddp_config or DistributedDataParallelConfig()
            chunks = [
                DistributedDataParallel(
                    self, ddp_config, chunk,
                    # Later chunks' grads are reduced as one bucket (megatron's rule).
                    disable_bucketing=index > 0)
                for index, chunk in enumerate(chunks)]
            if data_parallel_random_init:
                for chunk in chunks:
                    chunk.broadcast_params()
        if post_wrap_hook is not None:
            chunks = post_wrap_hook(chunks) or chunks
        return chunks
