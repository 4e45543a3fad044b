"""T5ModelProvider: encoder-decoder models through megatron-core's T5Model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from megatron.core.transformer.transformer_config import TransformerConfig

from mbridge_models import layer_specs
from mbridge_models.provider import ModelProviderMixin


@dataclass
class T5ModelProvider(ModelProviderMixin, TransformerConfig):
    """Encoder of ``encoder_num_layers`` layers, decoder of ``num_layers`` layers (T5 defaults:
    T5-base sizes, relative buckets as in the paper when position_embedding_type="relative")."""

    num_layers: int = 12
    hidden_size: int = 768
    ffn_hidden_size: int = 3072
    num_attention_heads: int = 12
    kv_channels: int | None = 64
    encoder_num_layers: int = field(default=12, kw_only=True)
    seq_length: int = field(default=512, kw_only=True)
    seq_length_dec: int = field(default=128, kw_only=True)
    vocab_size: int | None = field(default=None, kw_only=True)
    should_pad_vocab: bool = field(default=False, kw_only=True)
    make_vocab_size_divisible_by: int = field(default=128, kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    fp16_lm_cross_entropy: bool = field(default=False, kw_only=True)
    parallel_output: bool = field(default=True, kw_only=True)
    position_embedding_type: Literal["learned_absolute", "rope", "relative"] = field(
        default="learned_absolute", kw_only=True)
    rotary_percent: float = field(default=1.0, kw_only=True)
    seq_len_interpolation_factor: float | None = field(default=None, kw_only=True)
    relative_attention_num_buckets: int = field(default=32, kw_only=True)
    relative_attention_max_distance: int = field(default=128, kw_only=True)
    transformer_layer_spec: str = field(default="auto", kw_only=True)
    """"auto" | "te" | "mbridge_local" | "local", as for GPTModelProvider."""
    encoder_tensor_model_parallel_size: int = field(default=0, kw_only=True)
    encoder_pipeline_model_parallel_size: int = field(default=0, kw_only=True)

    def encoder_config(self) -> TransformerConfig:
        """The encoder's config: this one with the encoder's depth (and TP if set apart)."""
        changes = {"num_layers": self.encoder_num_layers}
        if self.encoder_tensor_model_parallel_size:
            changes["tensor_model_parallel_size"] = self.encoder_tensor_model_parallel_size
        encoder = dataclasses.replace(self, **changes)
        encoder.finalize()
        return encoder

    def block_specs(self):
        """(encoder, decoder) block specs for the chosen implementation."""
        from megatron.core.models.T5 import t5_spec

        choice = layer_specs.resolve_choice(self.transformer_layer_spec)
        if choice == "te":
            return (t5_spec.get_t5_encoder_with_transformer_engine_block_spec(
                        self.encoder_num_layers),
                    t5_spec.get_t5_decoder_with_transformer_engine_block_spec(self.num_layers))
        encoder = t5_spec.get_t5_encoder_with_local_block_spec(self.encoder_num_layers)
        decoder = t5_spec.get_t5_decoder_with_local_block_spec(self.num_layers)
        if choice == "mbridge_local":
            encoder, decoder = (layer_specs.fast_local_spec(encoder, self),
                                layer_specs.fast_local_spec(decoder, self))
        return encoder, decoder

    def provide(self, pre_process: bool | None = None, post_process: bool | None = None,
                vp_stage: int | None = None):
        from megatron.core.models.T5 import T5Model

        self.finalize()
        pre_process, post_process = self.pipeline_ends(pre_process, post_process, vp_stage)
        encoder_spec, decoder_spec = self.block_specs()
        return T5Model(
            config=self,
            encoder_config=self.encoder_config(),
            transformer_encoder_layer_spec=encoder_spec,
            transformer_decoder_layer_spec=decoder_spec,
            vocab_size=self.padded_vocab_size(),
            max_sequence_length=self.seq_length,
            pre_process=pre_process,
            post_process=post_process,
            fp16_lm_cross_entropy=self.fp16_lm_cross_entropy,
            parallel_output=self.parallel_output,
            share_embeddings_and_output_weights=self.share_embeddings_and_output_weights,
            position_embedding_type=self.position_embedding_type,
            rotary_percent=self.rotary_percent,
            seq_len_interpolation_factor=self.seq_len_interpolation_factor,
            relative_attention_num_buckets=self.relative_attention_num_buckets,
            relative_attention_max_distance=self.relative_attention_max_distance,
        )
