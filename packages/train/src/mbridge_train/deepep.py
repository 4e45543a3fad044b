"""apply_deepep: route an MoE provider's token dispatch through DeepEP (megatron-core's flex
dispatcher with the ``deepep`` backend).

DeepEP's fused all-to-all kernels exist for NVIDIA Ampere and Hopper GPUs and come from the
separately built ``deep_ep`` package, neither of which a config can know about, so the
hardware and library check (``validate_deepep``) runs at training start on every rank.
"""

from __future__ import annotations

import importlib.util

from mbridge_config.errors import ConfigError


def apply_deepep(model_provider):
    """Select the flex dispatcher with the DeepEP backend on ``model_provider`` (edited in place
    and returned). Raises ConfigError for a provider without experts, or one padding expert
    inputs to capacity (DeepEP's dispatcher does not pad)."""
    if not getattr(model_provider, "num_moe_experts", None):
        raise ConfigError("DeepEP dispatches MoE tokens; this provider has no experts "
                          f"({type(model_provider).__name__}.num_moe_experts="
                          f"{getattr(model_provider, 'num_moe_experts', None)!r})",
                          field="model.num_moe_experts")
    if getattr(model_provider, "moe_pad_expert_input_to_capacity", False):
        raise ConfigError("DeepEP's dispatcher does not pad expert inputs to capacity; set it "
                          "to False", field="model.moe_pad_expert_input_to_capacity")
    model_provider.moe_token_dispatcher_type = "flex"
    model_provider.moe_flex_dispatcher_backend = "deepep"
    return model_provider


def uses_deepep(model_provider) -> bool:
    return bool(getattr(model_provider, "num_moe_experts", None)) and \
        getattr(model_provider, "moe_token_dispatcher_type", None) == "flex" and (
            getattr(model_provider, "moe_flex_dispatcher_backend", None) == "deepep"
            or getattr(model_provider, "moe_enable_deepep", False))


def validate_deepep(model_provider) -> None:
    """At training start: a provider using DeepEP needs CUDA on an Ampere (8.x) or Hopper
    (9.x) GPU and the ``deep_ep`` package; anything else is one ConfigError."""
    if not uses_deepep(model_provider):
        return
    import torch

    field = "model.moe_flex_dispatcher_backend"
    if not torch.cuda.is_available():
        raise ConfigError("DeepEP needs an NVIDIA Ampere or Hopper GPU; no CUDA device is "
                          "available", field=field)
    major, minor = torch.cuda.get_device_capability()
    if major not in (8, 9):
        raise ConfigError(f"DeepEP needs an NVIDIA Ampere or Hopper GPU (compute capability 8.x "
                          f"or 9.x); {torch.cuda.get_device_name()} is {major}.{minor}",
                          field=field)
    if importlib.util.find_spec("deep_ep") is None:
        raise ConfigError("DeepEP needs the deep_ep package, which is not installed (build it "
                          "from the DeepEP sources for this CUDA and torch)", field=field)
