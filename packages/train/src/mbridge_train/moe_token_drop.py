"""apply_moe_token_drop: give an MoE provider a fixed expert capacity (tokens over it are
dropped) and optionally pad every expert's input up to it.

Fixed capacity makes the per-expert shapes static, which trades a little quality for fewer
host syncs and steadier memory. megatron-core implements dropping in the router and padding in
the all-to-all dispatcher, so that is the dispatcher this asks for.
"""

from __future__ import annotations

from mbridge_config.errors import ConfigError

# megatron-core's router drops tokens only under these load-balancing types.
_CAPACITY_BALANCING = ("aux_loss", "seq_aux_loss", "global_aux_loss", "none")
_DROP_POLICIES = ("probs", "position")


def apply_moe_token_drop(model_provider, moe_expert_capacity_factor: float = 1.0,
                         moe_pad_expert_input_to_capacity: bool = True,
                         moe_token_drop_policy: str = "probs"):
    """Set ``moe_expert_capacity_factor``, ``moe_pad_expert_input_to_capacity`` and
    ``moe_token_drop_policy`` on ``model_provider`` (edited in place and returned).

    Raises ConfigError naming the field when the provider is not MoE, its dispatcher or
    load-balancing type cannot drop tokens, or the arguments are out of range."""
    problems = []
    if not getattr(model_provider, "num_moe_experts", None):
        raise ConfigError("token drop applies to MoE models; this provider has no experts "
                          f"({type(model_provider).__name__}.num_moe_experts="
                          f"{getattr(model_provider, 'num_moe_experts', None)!r})",
                          field="model.num_moe_experts")
    dispatcher = getattr(model_provider, "moe_token_dispatcher_type", None)
    if dispatcher != "alltoall":
        problems.append(("model.moe_token_dispatcher_type",
                         f"token drop needs the 'alltoall' dispatcher (megatron-core drops and "
                         f"pads there), got {dispatcher!r}"))
    balancing = getattr(model_provider, "moe_router_load_balancing_type", "aux_loss")
    kinds = balancing if isinstance(balancing, list) else [balancing]
    bad = [k for k in kinds if k not in _CAPACITY_BALANCING]
    if bad:
        problems.append(("model.moe_router_load_balancing_type",
                         f"{bad} cannot drop tokens; use one of {list(_CAPACITY_BALANCING)}"))
    if moe_expert_capacity_factor is None or not moe_expert_capacity_factor > 0:
        problems.append(("moe_expert_capacity_factor",
                         f"must be a positive number, got {moe_expert_capacity_factor!r}"))
    if moe_token_drop_policy not in _DROP_POLICIES:
        problems.append(("moe_token_drop_policy",
                         f"must be one of {list(_DROP_POLICIES)}, got {moe_token_drop_policy!r}"))
    if problems:
        raise ConfigError(problems)
    model_provider.moe_expert_capacity_factor = float(moe_expert_capacity_factor)
    model_provider.moe_pad_expert_input_to_capacity = bool(moe_pad_expert_input_to_capacity)
    model_provider.moe_token_drop_policy = moe_token_drop_policy
    return model_provider
