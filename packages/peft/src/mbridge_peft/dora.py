"""DoRA (Liu et al. 2024): LoRA for the direction, a trained magnitude per output feature."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from mbridge_peft.adapters import DoRAAdapter
from mbridge_peft.base import PEFT
from mbridge_peft.linears import LinearLayout
from mbridge_peft.lora import DEFAULT_TARGETS, PEFTConfigError, adapter_kwargs, check_fields
from mbridge_peft.wrappers import AdapterWrapper, DoRALinear


@dataclass
class DoRA(PEFT):
    """``m * (W + s B A) / ||W + s B A||`` on the targeted linears (fields as in LoRA).

    The magnitude m starts as the row norms of the base weight *at wrap time*: load the
    pretrained weights first, or call ``reset_magnitudes(model)`` after loading them.
    Dropout is "pre" only (on the adapter input), as in Megatron Bridge.
    """

    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    exclude_modules: list[str] = field(default_factory=list)
    dim: int = 32
    alpha: int = 64
    dropout: float = 0.0
    dropout_position: Literal["pre", "post"] = "pre"
    lora_A_init_method: str = "xavier"
    lora_B_init_method: str = "zero"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.dropout_position != "pre":
            raise PEFTConfigError("DoRA.dropout_position: only 'pre' is supported (dropout on "
                                  "the adapter input)")

    def wrap(self, name: str, module: nn.Module, layout: LinearLayout,
             generator: torch.Generator) -> AdapterWrapper:
        if getattr(module, "weight", None) is None:
            raise PEFTConfigError(f"DoRA: {name} receives its weight at call time (shared "
                                  "embedding/output weights); exclude it from the targets")
        adapter = DoRAAdapter(layout, self.dim, self.alpha, module.weight,
                              **adapter_kwargs(self, module, generator))
        return DoRALinear(module, adapter, layout)


@torch.no_grad()
def reset_magnitudes(model) -> None:
    """Set every DoRA magnitude to its current ``||W + s B A||`` (after loading base weights)."""
    from mbridge_peft.base import wrappers

    for _, wrapper in wrappers(model):
        if isinstance(wrapper, DoRALinear) and not wrapper.merged:
            adapter = wrapper.adapter
            adapter.weight_magnitude.copy_(adapter.weight_norm(wrapper.base_weight()))
