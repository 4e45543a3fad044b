"""The MambaProvider the Mamba-family presets subclass.

The real one lives in ``mbridge_models.mamba_provider`` (megatron-core's HybridModel builder).
Until that module is on this branch, a placeholder with the same fields stands in, so presets and
parameter counting work; building a placeholder raises a clear error.
"""

from __future__ import annotations

try:
    from mbridge_models.mamba_provider import MambaProvider
except ImportError:  # placeholder until mbridge_models.mamba_provider lands
    from dataclasses import dataclass, field

    from mbridge_models.gpt_provider import GPTModelProvider

    @dataclass
    class MambaProvider(GPTModelProvider):
        """Mamba-2 / hybrid stack; pattern characters: M mamba, * attention, - MLP, E MoE."""

        hybrid_override_pattern: str | None = field(default=None, kw_only=True)
        hybrid_attention_ratio: float = field(default=0.0, kw_only=True)
        hybrid_mlp_ratio: float = field(default=0.0, kw_only=True)
        position_embedding_type: str = field(default="none", kw_only=True)
        share_embeddings_and_output_weights: bool = field(default=False, kw_only=True)
        mamba_stack_spec: object = field(default=None, kw_only=True)

        def layer_pattern(self) -> str:
            if self.hybrid_override_pattern:
                return self.hybrid_override_pattern
            if self.hybrid_attention_ratio or self.hybrid_mlp_ratio:
                from megatron.core.models.hybrid.hybrid_layer_allocation import (
                    pattern_from_ratios)

                return pattern_from_ratios(self.num_layers, self.hybrid_attention_ratio,
                                           self.hybrid_mlp_ratio)
            return "M" * self.num_layers

        def provide(self, pre_process=None, post_process=None, vp_stage=None):
            raise RuntimeError(f"{type(self).__name__}: building Mamba models needs "
                               "mbridge_models.mamba_provider (not on this branch yet)")

__all__ = ["MambaProvider"]
