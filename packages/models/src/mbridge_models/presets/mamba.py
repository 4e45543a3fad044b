"""Mamba-2 presets (state-spaces/mamba2-*) and NVIDIA's 8B Mamba-2 / Mamba-2-Hybrid.

Sources: state-spaces/mamba2-{130m,370m,780m,1.3b,2.7b} config.json (d_model, n_layer,
vocab_size 50277 padded to a multiple of 16 = 50288 rows, tie_embeddings, RMSNorm; Mamba2
defaults d_state 128, headdim 64, ngroups 1, expand 2, d_conv 4); nvidia/mamba2-8b-3t-4k and
nvidia/mamba2-hybrid-8b-3t-4k (arXiv 2406.07887: 4096 hidden, 56 layers, 8 groups, 256000
vocabulary; the hybrid has 24 Mamba-2, 4 attention and 28 MLP layers, no position embedding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mbridge_models.mamba_provider import MambaProvider


@dataclass
class _StateSpacesMamba2(MambaProvider):
    normalization: str = "RMSNorm"
    layernorm_epsilon: float = 1e-5
    add_bias_linear: bool = False
    gated_linear_unit: bool = False
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    num_attention_heads: int = 1  # no attention layers; megatron needs a positive value
    mamba_state_dim: int = 128
    mamba_head_dim: int = 64
    mamba_num_groups: int = 1
    vocab_size: int | None = field(default=50288, kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=True, kw_only=True)
    seq_length: int = field(default=2048, kw_only=True)


@dataclass
class MambaModelProvider130M(_StateSpacesMamba2):
    num_layers: int = 24
    hidden_size: int = 768
    hf_model_id: str | None = field(default="state-spaces/mamba2-130m", kw_only=True)


@dataclass
class MambaModelProvider370M(_StateSpacesMamba2):
    num_layers: int = 48
    hidden_size: int = 1024
    hf_model_id: str | None = field(default="state-spaces/mamba2-370m", kw_only=True)


@dataclass
class MambaModelProvider780M(_StateSpacesMamba2):
    num_layers: int = 48
    hidden_size: int = 1536
    hf_model_id: str | None = field(default="state-spaces/mamba2-780m", kw_only=True)


@dataclass
class MambaModelProvider1P3B(_StateSpacesMamba2):
    num_layers: int = 48
    hidden_size: int = 2048
    hf_model_id: str | None = field(default="state-spaces/mamba2-1.3b", kw_only=True)


@dataclass
class MambaModelProvider2P7B(_StateSpacesMamba2):
    num_layers: int = 64
    hidden_size: int = 2560
    hf_model_id: str | None = field(default="state-spaces/mamba2-2.7b", kw_only=True)


@dataclass
class NVIDIAMambaModelProvider8B(_StateSpacesMamba2):
    """Pure Mamba-2, 8B (NVIDIA research, 3.5T tokens)."""

    num_layers: int = 56
    hidden_size: int = 4096
    mamba_num_groups: int = 8
    vocab_size: int | None = field(default=256000, kw_only=True)
    share_embeddings_and_output_weights: bool = field(default=False, kw_only=True)
    seq_length: int = field(default=4096, kw_only=True)
    hf_model_id: str | None = field(default="nvidia/mamba2-8b-3t-4k", kw_only=True)


@dataclass
class NVIDIAMambaHybridModelProvider8B(NVIDIAMambaModelProvider8B):
    """Mamba-2-Hybrid 8B: 24 Mamba-2, 4 grouped-query attention and 28 MLP layers."""

    hybrid_override_pattern: str | None = field(
        default="M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-", kw_only=True)
    ffn_hidden_size: int | None = 16384
    num_attention_heads: int = 32
    num_query_groups: int | None = 8
    hf_model_id: str | None = field(default="nvidia/mamba2-hybrid-8b-3t-4k", kw_only=True)


# Spellings used by Megatron Bridge (current and deprecated).
MambaModelProvider1_3B = MambaProvider1_3B = MambaModelProvider1P3B
MambaModelProvider2_7B = MambaProvider2_7B = MambaModelProvider2P7B
MambaProvider130M = MambaModelProvider130M
MambaProvider370M = MambaModelProvider370M
MambaProvider780M = MambaModelProvider780M
NVIDIAMambaProvider8B = NVIDIAMambaModelProvider8B
NVIDIAMambaHybridProvider8B = NVIDIAMambaHybridModelProvider8B
