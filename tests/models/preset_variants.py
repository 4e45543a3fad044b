"""Tiny variants of each preset family: the family's own class with small dimensions.

Same class, same code path (norm type, gating, biases, qk-norm, MLA, MoE layout, MTP,
position embedding), only the sizes shrink, so megatron-core builds them on a CPU in well under
a second. Used by the counting cross-check and the forward/backward test.
"""

from __future__ import annotations

SEQ, VOCAB = 16, 128

# Small shapes shared by every transformer family.
_SMALL = dict(num_layers=2, hidden_size=64, ffn_hidden_size=96, num_attention_heads=4,
              num_query_groups=2, kv_channels=16, vocab_size=VOCAB, seq_length=SEQ)
_MOE = dict(num_moe_experts=4, moe_router_topk=2, moe_ffn_hidden_size=32,
            moe_aux_loss_coeff=0.0)
# MLA: megatron-core resolves MLA's q/kv norms with the backend named by transformer_impl
# (default Transformer Engine), so local builds must say "local".
_MLA = dict(q_lora_rank=32, kv_lora_rank=16, qk_head_dim=16, qk_pos_emb_head_dim=8,
            v_head_dim=16, original_max_position_embeddings=SEQ, transformer_impl="local")
# Full-rank queries (q_lora_rank None) with latent norms: megatron-core 0.19 builds q_proj as a
# fused norm+linear, which only Transformer Engine provides; locally the latent norms are off.
_MLA_FULL_Q = dict(_MLA, q_lora_rank=None, qk_layernorm=False)
# On a CPU: no torch.compile'd fused activation (numerically the same function), CPU init.
_CPU = dict(use_cpu_initialization=True, bias_activation_fusion=False,
            transformer_layer_spec="mbridge_local")


def _tiny(cls, **overrides):
    fields = {**_SMALL, **_CPU}
    fields.update(overrides)
    return cls(**fields)


def transformer_variants() -> dict[str, object]:
    """name -> tiny provider, one per transformer family (and feature combination)."""
    from mbridge_models import presets as P

    return {
        "llama2": _tiny(P.Llama2ModelProvider7B, num_query_groups=4),
        "llama3": _tiny(P.Llama3ModelProvider8B),
        "llama31": _tiny(P.Llama31ModelProvider8B),
        "llama32_tied": _tiny(P.Llama32ModelProvider1B),
        "codellama": _tiny(P.CodeLlamaModelProvider34B),
        "llama4_scout": _tiny(P.Llama4Experts16ModelProvider, num_layers=4,
                              **{**_MOE, "moe_router_topk": 1},
                              moe_shared_expert_intermediate_size=32),
        "llama4_maverick": _tiny(P.Llama4Experts128ModelProvider, num_layers=4,
                                 **{**_MOE, "moe_router_topk": 1},
                                 moe_shared_expert_intermediate_size=32,
                                 moe_layer_freq=[0, 1, 0, 1]),
        "qwen2_qkv_bias": _tiny(P.Qwen2ModelProvider7B),
        "qwen25_tied": _tiny(P.Qwen25ModelProvider500M),
        "qwen3_qk_norm": _tiny(P.Qwen3ModelProvider8B),
        "qwen3_moe": _tiny(P.Qwen3MoEModelProvider30B_A3B, **_MOE),
        "qwen25_vl": _tiny(P.Qwen25VLModelProvider7B, mrope_section=[2, 3, 3]),
        "deepseek_v2": _tiny(P.DeepSeekV2ModelProvider, **_MOE, **_MLA,
                             moe_shared_expert_intermediate_size=64, moe_layer_freq=[0, 1],
                             moe_router_num_groups=2, moe_router_group_topk=1),
        "deepseek_v2_lite": _tiny(P.DeepSeekV2LiteModelProvider, **_MOE,
                                  **_MLA_FULL_Q,
                                  moe_shared_expert_intermediate_size=64,
                                  moe_layer_freq=[0, 1]),
        "deepseek_v3_mtp": _tiny(P.DeepSeekV3ModelProvider, **_MOE, **_MLA,
                                 moe_shared_expert_intermediate_size=32, moe_layer_freq=[0, 1],
                                 moe_router_num_groups=2, moe_router_group_topk=1),
        "moonlight": _tiny(P.MoonlightModelProvider16B, **_MOE,
                           **_MLA_FULL_Q,
                           moe_shared_expert_intermediate_size=64, moe_layer_freq=[0, 1]),
        "nemotron3": _tiny(P.Nemotron3ModelProvider8B),
        "nemotron4": _tiny(P.Nemotron4ModelProvider15B),
        # Features no preset uses, through the same counting paths.
        "gpt_learned_abs_bias": _tiny(P.Nemotron3ModelProvider22B, position_embedding_type=
                                      "learned_absolute", add_bias_linear=True,
                                      num_query_groups=None, kv_channels=None),
    }


def mamba_variants() -> dict[str, object]:
    from mbridge_models import presets as P

    return {
        "mamba2": _tiny(P.MambaModelProvider130M, num_layers=2, mamba_head_dim=16,
                        mamba_state_dim=8),
        "nemotron_h": _tiny(P.NemotronHModelProvider8B, num_layers=4, mamba_num_heads=8,
                            mamba_head_dim=16, mamba_state_dim=8, mamba_num_groups=2,
                            hybrid_override_pattern="M-*-"),
    }


# ----------------------------------------------------------------------------- building


def build(provider, seed: int = 1234):
    """Initialise a 1-rank parallel state for ``provider`` and build its model on the CPU."""
    provider.initialize_model_parallel(seed=seed)
    return provider.provide()


def forward_backward(model, provider, seed: int = 0):
    """Mean LM loss of one random batch, after its backward pass."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (2, SEQ + 1), generator=generator)
    positions = torch.arange(SEQ).expand(2, -1)
    if provider.position_embedding_type == "mrope":  # (t, h, w) positions; text: all equal
        positions = positions.unsqueeze(0).expand(3, -1, -1)
    loss = model(tokens[:, :-1], positions, None, labels=tokens[:, 1:]).float().mean()
    loss.backward()
    return loss


class _GatedRMSNormStandIn:
    """mamba-ssm's gated RMSNorm, as far as construction goes: one weight per channel."""

    def __new__(cls, hidden_size, eps=1e-5, group_size=None, norm_before_gate=False,
                device=None, dtype=None):
        import torch

        module = torch.nn.Module()
        module.weight = torch.nn.Parameter(torch.ones(hidden_size, dtype=dtype))
        return module


def mamba_mixer_parameters(provider) -> int:
    """Parameters of one megatron-core MambaMixer built with local linear layers.

    megatron-core refuses to build the mixer without mamba-ssm and einops (its forward pass runs
    on their kernels); construction needs neither, so for the construction only the
    availability flags are lifted and mamba-ssm's gated RMSNorm is replaced by a stand-in of
    the same shape (one weight per inner channel).
    """
    from megatron.core.process_groups_config import ProcessGroupCollection
    from megatron.core.ssm import mamba_context_parallel, mamba_mixer
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear

    provider.initialize_model_parallel(seed=0)
    provider.finalize()
    patches = [(mamba_mixer, "HAVE_MAMBA_SSM", True), (mamba_mixer, "HAVE_EINOPS", True),
               (mamba_context_parallel, "HAVE_EINOPS", True),
               (mamba_mixer, "ExtendedRMSNorm", _GatedRMSNormStandIn)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        mixer = mamba_mixer.MambaMixer(
            provider, mamba_mixer.MambaMixerSubmodules(in_proj=ColumnParallelLinear,
                                                       out_proj=RowParallelLinear),
            d_model=provider.hidden_size, layer_number=1,
            pg_collection=ProcessGroupCollection.use_mpu_process_groups())
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
    return sum(p.numel() for p in mixer.parameters())


# ----------------------------------------------------------------------------- one fork for all


def _build_all(rank, world_size):
    """On one forked CPU rank: build every tiny variant, count, run forward + backward."""
    import torch
    from megatron.core import parallel_state

    from mbridge_models.counting import _Dims, count_parameters

    results = {}
    try:
        for name, provider in transformer_variants().items():
            model = build(provider)
            loss = forward_backward(model, provider)
            params = list(model.parameters())
            grads = [p.grad for p in params if p.grad is not None]
            results[name] = dict(
                counted=count_parameters(provider),
                built=sum(p.numel() for p in params),
                loss=float(loss.detach()),
                parameter_tensors=len(params),
                parameters_with_grad=len(grads),
                grads_finite=all(bool(torch.isfinite(g).all()) for g in grads),
            )
            parallel_state.destroy_model_parallel()
        for name, provider in mamba_variants().items():
            results[name] = dict(counted=_Dims(provider).mamba(),
                                 built=mamba_mixer_parameters(provider))
            parallel_state.destroy_model_parallel()
    finally:
        if parallel_state.model_parallel_is_initialized():
            parallel_state.destroy_model_parallel()
    return results


try:
    import pytest

    _BUILT: dict = {}

    @pytest.fixture(scope="session")
    def built_variants():
        """Every tiny variant built by megatron-core once per test session (one forked rank;
        memoised here because each test module that imports the fixture gets its own)."""
        from multirank import run_ranks

        if not _BUILT:
            _BUILT.update(run_ranks(_build_all, 1, timeout=600)[0])
        return _BUILT
except ImportError:  # imported outside pytest
    pass
