"""LoRA (Hu et al. 2021) with Megatron Bridge's configuration fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from mbridge_config.errors import MBridgeError
from torch import nn

from mbridge_peft.adapters import INIT_METHODS, LoRAAdapter
from mbridge_peft.base import PEFT
from mbridge_peft.linears import LinearLayout
from mbridge_peft.wrappers import AdapterWrapper, LoRALinear

DEFAULT_TARGETS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2")


class PEFTConfigError(MBridgeError, ValueError):
    """A LoRA / DoRA field has a value that cannot work."""


@dataclass
class LoRA(PEFT):
    """Low-rank adapters ``W x + (alpha / dim) B A x`` on the targeted linears.

    target_modules: short names (``linear_qkv``) or wildcards on full module names
        (``*.layers.0.*.linear_qkv``); empty means every linear layer.
    exclude_modules: names/wildcards left out of the targets.
    dim, alpha: rank r and scaling alpha (scale = alpha / r).
    dropout, dropout_position: dropout on the adapter input ("pre") or output ("post").
    lora_A_init_method, lora_B_init_method: "xavier", "kaiming", "normal" or "zero".
    a2a_experimental: accepted for Megatron Bridge configs; has no effect here.
    lora_dtype: adapter parameter dtype (default: the base weight's).
    """

    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    exclude_modules: list[str] = field(default_factory=list)
    dim: int = 32
    alpha: int = 32
    dropout: float = 0.0
    dropout_position: Literal["pre", "post"] = "pre"
    lora_A_init_method: str = "xavier"
    lora_B_init_method: str = "zero"
    a2a_experimental: bool = False
    lora_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        check_fields(self)

    def wrap(self, name: str, module: nn.Module, layout: LinearLayout,
             generator: torch.Generator) -> AdapterWrapper:
        return LoRALinear(module, LoRAAdapter(layout, self.dim, self.alpha,
                                              **adapter_kwargs(self, module, generator)), layout)


def check_fields(peft) -> None:
    """One clear error per bad field, at construction."""
    name = type(peft).__name__
    if not isinstance(peft.dim, int) or peft.dim < 1:
        raise PEFTConfigError(f"{name}.dim: {peft.dim!r} must be a positive integer (the rank)")
    if not peft.alpha or peft.alpha <= 0:
        raise PEFTConfigError(f"{name}.alpha: {peft.alpha!r} must be positive")
    if not 0.0 <= peft.dropout < 1.0:
        raise PEFTConfigError(f"{name}.dropout: {peft.dropout!r} must be in [0, 1)")
    if peft.dropout_position not in ("pre", "post"):
        raise PEFTConfigError(f"{name}.dropout_position: {peft.dropout_position!r} is not 'pre' "
                              "or 'post'")
    for field_name in ("lora_A_init_method", "lora_B_init_method"):
        value = getattr(peft, field_name)
        if value not in INIT_METHODS:
            raise PEFTConfigError(f"{name}.{field_name}: {value!r} is not one of "
                                  f"{', '.join(INIT_METHODS)}")
    for field_name in ("target_modules", "exclude_modules"):
        value = getattr(peft, field_name)
        if isinstance(value, str) or not all(isinstance(v, str) for v in value or []):
            raise PEFTConfigError(f"{name}.{field_name}: {value!r} must be a list of names")


def adapter_kwargs(peft, module: nn.Module, generator: torch.Generator) -> dict:
    """Adapter construction arguments shared by LoRA and DoRA."""
    reference = getattr(module, "weight", None)
    if reference is None:  # e.g. an output layer fed the shared embedding weight at call time
        reference = next(module.parameters(), None)
    if reference is not None:
        dtype, device = reference.dtype, reference.device
    else:
        dtype = getattr(getattr(module, "config", None), "params_dtype", torch.float32)
        device = torch.device("cuda", torch.cuda.current_device()) if (
            torch.cuda.is_available()) else torch.device("cpu")
    return dict(
        dropout=peft.dropout, dropout_position=peft.dropout_position,
        a_init=peft.lora_A_init_method, b_init=peft.lora_B_init_method,
        dtype=getattr(peft, "lora_dtype", None) or dtype, device=device,
        generator=generator, expert_allreduce=getattr(reference, "allreduce", True))
