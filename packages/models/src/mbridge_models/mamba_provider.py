"""MambaProvider: Mamba-2 and hybrid Mamba/attention/MLP language models (megatron's HybridModel).

A decoder-only language model like GPT (same vocab, embedding and output fields, hence the
subclass); the layer stack follows ``hybrid_override_pattern``: one character per layer,
"M" Mamba-2 mixer, "*" self-attention, "-" MLP, "E" MoE. The Mamba mixer runs only through
the CUDA kernels of ``mamba-ssm`` and ``causal-conv1d`` and megatron-core's hybrid spec is built
from Transformer Engine modules, so building checks for all three first.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import torch

from mbridge_models.gpt_provider import GPTModelProvider, PositionEmbedding

REQUIRED = {"mamba_ssm": "mamba-ssm", "causal_conv1d": "causal-conv1d",
            "transformer_engine": "transformer-engine[pytorch]"}


def missing_mamba_requirements() -> list[str]:
    """What is missing to build a Mamba layer here (empty when everything is in place)."""
    missing = [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]
    if not torch.cuda.is_available():
        missing.append("a CUDA device")
    return missing


@dataclass
class MambaProvider(GPTModelProvider):
    """Mamba-2 / hybrid stack; pattern characters: M mamba, * attention, - MLP, E MoE."""

    hybrid_override_pattern: str | None = field(default=None, kw_only=True)
    hybrid_attention_ratio: float = field(default=0.0, kw_only=True)
    hybrid_mlp_ratio: float = field(default=0.0, kw_only=True)
    position_embedding_type: PositionEmbedding = field(default="none", kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=False, kw_only=True)
    mamba_stack_spec: object = field(default=None, kw_only=True)
    """None: megatron-core's hybrid stack spec."""

    def layer_pattern(self) -> str:
        """The per-layer pattern (all Mamba when neither a pattern nor ratios are given)."""
        if self.hybrid_override_pattern:
            return self.hybrid_override_pattern
        if self.hybrid_attention_ratio or self.hybrid_mlp_ratio:
            from megatron.core.models.hybrid.hybrid_layer_allocation import pattern_from_ratios

            return pattern_from_ratios(self.num_layers, self.hybrid_attention_ratio,
                                       self.hybrid_mlp_ratio)
        return "M" * self.num_layers

    def parallelism_problems(self) -> list[tuple[str, str]]:
        problems = super().parallelism_problems()
        pattern = self.hybrid_override_pattern
        if pattern and len(pattern.split("/")[0].replace("|", "")) != self.num_layers:
            problems.append(("model.hybrid_override_pattern",
                             f"has {len(pattern)} layers, num_layers is {self.num_layers}"))
        return problems

    def provide(self, pre_process: bool | None = None, post_process: bool | None = None,
                vp_stage: int | None = None):
        missing = missing_mamba_requirements()
        if missing:
            raise RuntimeError(f"{type(self).__name__} needs {', '.join(missing)} to build Mamba "
                               "layers (pip install mamba-ssm causal-conv1d "
                               "'mbridge-models[te]' on a CUDA machine)")
        from megatron.core.models.hybrid.hybrid_layer_specs import hybrid_stack_spec
        from megatron.core.models.hybrid.hybrid_model import HybridModel

        self.finalize()
        pre_process, post_process = self.pipeline_ends(pre_process, post_process, vp_stage)
        return HybridModel(
            config=self,
            hybrid_stack_spec=self.mamba_stack_spec or hybrid_stack_spec,
            vocab_size=self.padded_vocab_size(),
            max_sequence_length=self.seq_length,
            hybrid_layer_pattern=self.layer_pattern(),
            pre_process=pre_process,
            post_process=post_process,
            fp16_lm_cross_entropy=self.fp16_lm_cross_entropy,
            parallel_output=self.parallel_output,
            share_embeddings_and_output_weights=self.share_embeddings_and_output_weights,
            position_embedding_type=self.position_embedding_type,
            rotary_percent=self.rotary_percent,
            rotary_base=self.rotary_base,
            seq_len_interpolation_factor=self.seq_len_interpolation_factor,
            vp_stage=vp_stage,
        )
