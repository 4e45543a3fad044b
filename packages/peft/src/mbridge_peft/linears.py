"""Which modules are linear layers an adapter can wrap, and how each is split over ranks.

An adapter must reproduce its base layer's tensor-parallel layout: which dimension is sharded,
which communication the layer does itself, and which the surrounding code does (MoE experts with
"explicit" communication leave it to the token dispatcher). ``describe`` reads that off megatron's
Column/RowParallelLinear, Transformer Engine's linears (when TE is importable) and torch's
nn.Linear, so the rest of mbridge-peft never looks at layer classes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear

Parallel = Literal["column", "row", "none"]


def _te_classes() -> dict[str, tuple[type, ...]]:
    """megatron's Transformer Engine wrappers by layout; empty without TE (guarded import)."""
    try:
        from megatron.core.extensions import transformer_engine as te_ext
    except Exception:  # TE missing or unusable here: no TE layers can exist in the model either
        return {}
    names = {"column": ("TEColumnParallelLinear", "TELayerNormColumnParallelLinear"),
             "row": ("TERowParallelLinear",), "any": ("TELinear",)}
    return {kind: tuple(getattr(te_ext, n) for n in group if hasattr(te_ext, n))
            for kind, group in names.items()}


_TE: dict[str, tuple[type, ...]] | None = None


def te_classes() -> dict[str, tuple[type, ...]]:
    global _TE
    if _TE is None:
        _TE = _te_classes() if _te_importable() else {}
    return _TE


def _te_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformer_engine") is not None


@dataclass(frozen=True)
class LinearLayout:
    """A base linear's shapes (full, unsharded) and its tensor-parallel behaviour."""

    parallel: Parallel
    in_features: int
    out_features: int
    tp_group: torch.distributed.ProcessGroup | None = None
    sequence_parallel: bool = False
    explicit_comm: bool = False
    """MoE expert layers whose TP communication the token dispatcher does: a column layer's
    input gradient and a row layer's output stay partial per rank."""
    gather_output: bool = False
    input_is_parallel: bool = True
    gated: bool = False
    """A gated MLP's fc1: each rank's rows are [gate_r; up_r], not a contiguous slice."""
    is_expert: bool = False
    layernorm_input: bool = False
    """Transformer Engine's LayerNorm+Linear: the adapter reads the normalised input."""
    returns_tuple: bool = True
    """megatron linears return (output, bias); torch's nn.Linear returns the output."""

    @property
    def tp_size(self) -> int:
        return self.tp_group.size() if self.tp_group is not None else 1

    @property
    def tp_rank(self) -> int:
        return self.tp_group.rank() if self.tp_group is not None else 0

    @property
    def local_out(self) -> int:
        return self.out_features // self.tp_size if self.parallel == "column" else self.out_features

    @property
    def local_in(self) -> int:
        return self.in_features // self.tp_size if self.parallel == "row" else self.in_features


def describe(module: torch.nn.Module, name: str = "") -> LinearLayout | None:
    """The layout of ``module`` if it is a linear layer an adapter can wrap, else None."""
    config = getattr(module, "config", None)
    gated = bool(name.endswith("linear_fc1") and getattr(config, "gated_linear_unit", False))
    if isinstance(module, ColumnParallelLinear):
        return LinearLayout(
            "column", module.input_size, module.output_size, module.tp_group,
            sequence_parallel=module.sequence_parallel, explicit_comm=module.explicit_expert_comm,
            gather_output=module.gather_output, gated=gated, is_expert=module.is_expert)
    if isinstance(module, RowParallelLinear):
        return LinearLayout(
            "row", module.input_size, module.output_size, module.tp_group,
            sequence_parallel=module.sequence_parallel, explicit_comm=module.explicit_expert_comm,
            input_is_parallel=module.input_is_parallel, is_expert=module.is_expert)
    te = te_classes()
    if te and isinstance(module, te["column"] + te["row"] + te["any"]):
        return _describe_te(module, te, gated)
    if isinstance(module, torch.nn.Linear):
        return LinearLayout("none", module.in_features, module.out_features, returns_tuple=False)
    return None


def _describe_te(module, te, gated: bool) -> LinearLayout:
    """TE linears keep local sizes in in_features/out_features (megatron's wrappers)."""
    group = getattr(module, "tp_group", None)
    size = group.size() if group is not None else 1
    sequence_parallel = bool(getattr(module, "sequence_parallel", False)) and size > 1
    is_expert = bool(getattr(module, "is_expert", False))
    explicit = bool(getattr(module, "explicit_expert_comm", False))
    if isinstance(module, te["column"]) or getattr(module, "parallel_mode", None) == "column":
        # LayerNorm+Linear: the wrapper asks TE for the normalised input, gathered under SP.
        layernorm = type(module).__name__ == "TELayerNormColumnParallelLinear"
        return LinearLayout("column", module.in_features, module.out_features * size, group,
                            sequence_parallel=sequence_parallel,
                            explicit_comm=explicit, gated=gated, is_expert=is_expert,
                            layernorm_input=layernorm)
    if isinstance(module, te["row"]) or getattr(module, "parallel_mode", None) == "row":
        return LinearLayout("row", module.in_features * size, module.out_features, group,
                            sequence_parallel=sequence_parallel, explicit_comm=explicit,
                            is_expert=is_expert)
    return LinearLayout("none", module.in_features, module.out_features, is_expert=is_expert)


def linear_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module, LinearLayout]]:
    """Every wrappable linear in ``model`` with its full module name and layout, in order.

    An already-applied adapter wrapper is reported (with its base layer's layout) in place of
    the linear inside it, so applying PEFT twice finds the same names and wraps nothing new.
    """
    found = []
    skip_below: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in skip_below):
            continue
        if getattr(module, "is_peft_wrapper", False):
            skip_below.append(name + ".")
            found.append((name, module, module.layout))
            continue
        layout = describe(module, name)
        if layout is not None:
            found.append((name, module, layout))
    return found
