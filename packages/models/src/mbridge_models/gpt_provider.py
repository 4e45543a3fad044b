"""GPTModelProvider: a megatron-core TransformerConfig that builds a decoder-only GPTModel."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from megatron.core.transformer.transformer_config import TransformerConfig

from mbridge_config.errors import ConfigError
from mbridge_models import layer_specs
from mbridge_models.provider import ModelProviderMixin

PositionEmbedding = Literal["learned_absolute", "rope", "mrope", "yarn", "none"]


@dataclass
class GPTModelProvider(ModelProviderMixin, TransformerConfig):
    """Architecture + parallel layout + everything GPTModel needs; ``provide()`` builds it.

    All of megatron-core's TransformerConfig fields (including every parallelism field of
    ModelParallelConfig) are fields here too, so a provider is passed wherever megatron expects
    its config.
    """

    seq_length: int = field(default=1024, kw_only=True)
    vocab_size: int | None = field(default=None, kw_only=True)
    """None: taken from the tokenizer and padded (see mbridge_config.vocab)."""
    should_pad_vocab: bool = field(default=False, kw_only=True)
    make_vocab_size_divisible_by: int = field(default=128, kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    fp16_lm_cross_entropy: bool = field(default=False, kw_only=True)
    parallel_output: bool = field(default=True, kw_only=True)
    """Keep logits sharded over tensor-parallel ranks (the vocab-parallel loss consumes them)."""

    position_embedding_type: PositionEmbedding = field(default="learned_absolute", kw_only=True)
    rotary_base: int = field(default=10000, kw_only=True)
    rotary_percent: float = field(default=1.0, kw_only=True)
    rope_scaling: bool = field(default=False, kw_only=True)
    """Llama-3.1-style frequency scaling of RoPE."""
    rope_scaling_factor: float = field(default=8.0, kw_only=True)
    seq_len_interpolation_factor: float | None = field(default=None, kw_only=True)
    yarn_rotary_scaling_factor: float = field(default=1.0, kw_only=True)
    yarn_original_max_position_embeddings: int | None = field(default=None, kw_only=True)
    yarn_beta_fast: float = field(default=32.0, kw_only=True)
    yarn_beta_slow: float = field(default=1.0, kw_only=True)
    yarn_mscale: float = field(default=1.0, kw_only=True)
    yarn_mscale_all_dim: float = field(default=0.0, kw_only=True)
    yarn_correction_range_round_to_int: bool = field(default=True, kw_only=True)
    scatter_embedding_sequence_parallel: bool = field(default=True, kw_only=True)

    transformer_layer_spec: Any = field(default="auto", kw_only=True)
    """"auto" | "te" | "mbridge_local" | "local" (see layer_specs), a megatron ModuleSpec, or a
    callable ``(provider, vp_stage) -> spec``."""

    # Parallelism fields of the Megatron Bridge table that megatron-core 0.19 no longer has
    # (encoder-decoder models only); kept so configs written for Bridge load unchanged.
    encoder_tensor_model_parallel_size: int = field(default=0, kw_only=True)
    encoder_pipeline_model_parallel_size: int = field(default=0, kw_only=True)

    hf_model_id: str | None = field(default=None, kw_only=True)
    """The Hugging Face model this preset describes (documentation; nothing is downloaded)."""

    # ------------------------------------------------------------------ building

    def finalize(self):
        if not self._finalized and isinstance(self.transformer_layer_spec, str) and \
                self.layer_spec_choice() != "te":
            self.transformer_impl = "local"  # megatron picks the MLA q/kv norm backend from it
        return super().finalize()

    def layer_spec_choice(self) -> str:
        spec = self.transformer_layer_spec
        return layer_specs.resolve_choice(spec) if isinstance(spec, str) else "custom"

    def layer_spec(self, vp_stage: int | None = None):
        spec = self.transformer_layer_spec
        if isinstance(spec, str):
            choice = layer_specs.resolve_choice(spec)
            if choice != "te":
                self._check_local_spec_support()
            return layer_specs.gpt_layer_spec(self, choice, vp_stage)
        if callable(spec) and not _is_module_spec(spec):
            return _call_spec_factory(spec, self, vp_stage)
        return spec

    def _check_local_spec_support(self) -> None:
        if self.context_parallel_size > 1:
            raise ConfigError("context_parallel_size > 1 needs transformer_layer_spec='te' "
                              "(Transformer Engine's attention)", field="model.context_parallel_size")
        if self.num_moe_experts and self.add_bias_linear and not self.moe_grouped_gemm:
            # megatron-core 0.19's SequentialMLP adds the expert bias in place onto the output
            # of a custom autograd Function, which autograd refuses in the backward pass.
            raise ConfigError("True with MoE experts needs transformer_layer_spec='te' "
                              "(megatron-core's local expert MLP cannot train with a bias); "
                              "set add_bias_linear=False", field="model.add_bias_linear")

    def provide(self, pre_process: bool | None = None, post_process: bool | None = None,
                vp_stage: int | None = None):
        """Build this rank's GPTModel (its pipeline stage / virtual stage ``vp_stage``)."""
        from mbridge_models.gpt_model import GPTModel

        self.finalize()
        vocab_size = self.padded_vocab_size()
        pre_process, post_process = self.pipeline_ends(pre_process, post_process, vp_stage)
        spec = self.layer_spec(vp_stage)
        return GPTModel(
            config=self,
            transformer_layer_spec=spec,
            vocab_size=vocab_size,
            max_sequence_length=self.seq_length,
            pre_process=pre_process,
            post_process=post_process,
            fp16_lm_cross_entropy=self.fp16_lm_cross_entropy,
            parallel_output=self.parallel_output,
            share_embeddings_and_output_weights=self.share_embeddings_and_output_weights,
            position_embedding_type=self.position_embedding_type,
            rotary_percent=self.rotary_percent,
            rotary_base=self.rotary_base,
            rope_scaling=self.rope_scaling,
            rope_scaling_factor=self.rope_scaling_factor,
            seq_len_interpolation_factor=self.seq_len_interpolation_factor,
            scatter_embedding_sequence_parallel=self.scatter_embedding_sequence_parallel,
            mtp_block_spec=self._mtp_block_spec(spec, vp_stage),
            vp_stage=vp_stage,
        )

    def _mtp_block_spec(self, spec, vp_stage):
        if not self.mtp_num_layers:
            return None
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_mtp_block_spec

        return get_gpt_mtp_block_spec(self, spec, use_transformer_engine=(
            self.layer_spec_choice() == "te"), vp_stage=vp_stage)


def _is_module_spec(spec) -> bool:
    from megatron.core.transformer.spec_utils import ModuleSpec

    return isinstance(spec, ModuleSpec) or type(spec).__name__.endswith("Submodules")


def _call_spec_factory(factory: Callable, provider, vp_stage):
    """Megatron Bridge's spec factories take the provider and optionally ``vp_stage``."""
    if "vp_stage" in inspect.signature(factory).parameters:
        return factory(provider, vp_stage=vp_stage)
    return factory(provider)
