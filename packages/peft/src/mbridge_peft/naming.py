"""Global module names: the same name for the same layer whatever the parallel layout.

megatron numbers a pipeline stage's layers from 0 and an expert-parallel rank's experts from 0,
so ``decoder.layers.0`` on stage 2 is not the model's layer 0. Targets (``*.layers.0.*``),
adapter checkpoints and exports use the global name: the layer's ``layer_number - 1`` and the
expert's global index.
"""

from __future__ import annotations

import re

import torch

_LAYER = re.compile(r"(^|\.)layers\.(\d+)$")
_EXPERT = re.compile(r"(^|\.)local_experts\.(\d+)$")


def global_names(model: torch.nn.Module) -> dict[str, str]:
    """Local module name -> global module name, for every module of ``model``."""
    renamed: dict[str, str] = {}
    for name, module in model.named_modules():
        parent, _, leaf = name.rpartition(".")
        base = renamed.get(parent, parent)
        new = f"{base}.{leaf}" if base else leaf
        layer_number = getattr(module, "layer_number", None)
        if _LAYER.search(name) and isinstance(layer_number, int):
            new = f"{base}.{layer_number - 1}" if base else str(layer_number - 1)
        elif _EXPERT.search(name):
            experts = len(model.get_submodule(parent))
            new = f"{base}.{_expert_rank_offset(experts) + int(leaf)}"
        renamed[name] = new
    return renamed


def _expert_rank_offset(local_experts: int) -> int:
    """Index of this rank's first expert (expert-parallel rank x experts per rank)."""
    from megatron.core import parallel_state

    try:
        rank = parallel_state.get_expert_model_parallel_rank()
    except (AssertionError, AttributeError, RuntimeError):
        rank = 0
    return rank * local_experts
