"""Which megatron-core layer implementation a provider builds with.

- ``"te"``: Transformer Engine modules (megatron-core's TE spec); needs TE and CUDA.
- ``"mbridge_local"``: megatron-core's own modules with core attention replaced by SDPA and
  sequence-parallel-aware torch norms (ours, fast without TE; same parameters and state-dict
  keys as megatron-core's local spec).
- ``"local"``: megatron-core's local spec untouched, as the name means to every megatron user
  (the baseline ours is compared with). ``"mcore_local"``, its earlier spelling here, is still
  accepted with a deprecation warning.
- ``"auto"``: ``"te"`` when TE is importable and CUDA present, otherwise ``"mbridge_local"``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from typing import Literal

import torch
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.torch_norm import WrappedTorchNorm

from mbridge_models.attention import SDPAttention

LayerSpecChoice = Literal["auto", "te", "mbridge_local", "local"]
CHOICES = ("auto", "te", "mbridge_local", "local")
DEPRECATED = {"mcore_local": "local"}


def transformer_engine_usable() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("transformer_engine") is not None


def resolve_choice(choice: str) -> str:
    """The concrete implementation for ``choice``; a clear error for impossible requests."""
    if choice in DEPRECATED:
        warnings.warn(f"transformer_layer_spec={choice!r} is deprecated: write "
                      f"{DEPRECATED[choice]!r} (megatron-core's local spec)", DeprecationWarning,
                      stacklevel=3)
        choice = DEPRECATED[choice]
    if choice not in CHOICES:
        raise ValueError(f"transformer_layer_spec: {choice!r} is not one of {', '.join(CHOICES)}")
    if choice == "auto":
        return "te" if transformer_engine_usable() else "mbridge_local"
    if choice == "te" and not transformer_engine_usable():
        raise RuntimeError(
            "transformer_layer_spec='te' needs Transformer Engine on a CUDA machine "
            "(pip install 'mbridge-models[te]'); use 'mbridge_local' otherwise")
    return choice


def gpt_layer_spec(config, choice: str, vp_stage: int | None = None):
    """Layer spec (dense models) or block spec (MoE: mixed dense/expert layers) for GPTModel."""
    from megatron.core.models.gpt import gpt_layer_specs as specs

    use_te = choice == "te"
    qk_l2_norm = getattr(config, "qk_l2_norm", False)
    if config.num_moe_experts:
        spec = specs.get_gpt_decoder_block_spec(
            config, use_transformer_engine=use_te, normalization=config.normalization,
            qk_l2_norm=qk_l2_norm, vp_stage=vp_stage)
    elif use_te:
        spec = specs.get_gpt_layer_with_transformer_engine_spec(
            qk_layernorm=config.qk_layernorm,
            multi_latent_attention=config.multi_latent_attention, qk_l2_norm=qk_l2_norm)
    else:
        spec = specs.get_gpt_layer_local_spec(
            qk_layernorm=config.qk_layernorm,
            multi_latent_attention=config.multi_latent_attention,
            normalization=config.normalization, qk_l2_norm=qk_l2_norm)
    return fast_local_spec(spec, config, vp_stage) if choice == "mbridge_local" else spec


def fast_local_spec(spec, config, vp_stage: int | None = None):
    """megatron-core's local spec with SDPA core attention and sequence-parallel-aware norms.

    A single layer spec becomes an explicit block spec, so the final norm is ours too (megatron
    would otherwise pick its default norm, which rejects sequence parallelism).
    """
    from megatron.core.transformer.transformer_block import (TransformerBlockSubmodules,
                                                             get_num_layers_to_build)

    if isinstance(spec, ModuleSpec):
        spec = TransformerBlockSubmodules(
            layer_specs=[spec] * get_num_layers_to_build(config, vp_stage=vp_stage),
            layer_norm=WrappedTorchNorm)
    return _swap_modules(spec)


class TorchNorm:
    """torch's LayerNorm / RMSNorm (fused kernels on GPU) usable with sequence parallelism.

    Under sequence parallelism each tensor-parallel rank normalises its own slice of tokens, so
    the norm weights' gradients must be summed over the group: megatron-core's gradient
    finalisation does that for parameters marked ``sequence_parallel``.
    """

    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, **_ignored):
        zero_centered = config.layernorm_zero_centered_gamma
        if config.normalization == "RMSNorm":
            norm = (_ZeroCenteredRMSNorm if zero_centered else torch.nn.RMSNorm)(
                hidden_size, eps=eps)
        elif config.normalization == "LayerNorm":
            norm = (_ZeroCenteredLayerNorm if zero_centered else torch.nn.LayerNorm)(
                hidden_size, eps=eps)
        else:
            raise ValueError(f"normalization: {config.normalization!r} is not supported by the "
                             "local spec (LayerNorm, RMSNorm)")
        norm.to(dtype=config.params_dtype)
        for parameter in norm.parameters():
            parameter.sequence_parallel = config.sequence_parallel
        return norm


class _ZeroCenteredLayerNorm(torch.nn.LayerNorm):
    """LayerNorm storing gamma - 1 (Nemotron's layernorm_zero_centered_gamma): weight decay
    then pulls the scale towards 1, not 0."""

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.elementwise_affine:
            torch.nn.init.zeros_(self.weight)

    def forward(self, x):
        return torch.nn.functional.layer_norm(x, self.normalized_shape, self.weight + 1,
                                              self.bias, self.eps)


class _ZeroCenteredRMSNorm(torch.nn.RMSNorm):
    """RMSNorm storing gamma - 1 (see _ZeroCenteredLayerNorm)."""

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.elementwise_affine:
            torch.nn.init.zeros_(self.weight)

    def forward(self, x):
        return torch.nn.functional.rms_norm(x, self.normalized_shape, self.weight + 1, self.eps)


_REPLACEMENTS = {DotProductAttention: SDPAttention, WrappedTorchNorm: TorchNorm}


def _swap_modules(spec):
    """A copy of ``spec`` with megatron's local attention and norm classes replaced by ours."""
    if isinstance(spec, type):
        return _REPLACEMENTS.get(spec, spec)
    if isinstance(spec, ModuleSpec):
        return dataclasses.replace(spec, module=_swap_modules(spec.module),
                                   submodules=_swap_modules(spec.submodules))
    if type(spec).__name__.endswith("Submodules") and dataclasses.is_dataclass(spec):
        changes = {f.name: _swap_modules(getattr(spec, f.name))
                   for f in dataclasses.fields(spec) if f.init}
        return dataclasses.replace(spec, **changes)
    if isinstance(spec, list):
        return [_swap_modules(s) for s in spec]
    return spec
