"""PEFT: the transform applied to a built model (or its list of virtual-pipeline chunks).

``peft(model)`` finds the targeted linears, wraps each with an adapter, freezes every base
parameter and leaves only adapter parameters trainable. It is what ConfigContainer's ``peft``
field holds (mbridge_config.protocols.PEFTProtocol) and what ``provide_distributed_model``
runs as its ``pre_wrap_hook``: on the bare chunks, before DDP, so DDP builds gradient buffers
for the adapter parameters only.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch
from torch import nn

from mbridge_peft import matching
from mbridge_peft.linears import LinearLayout, linear_modules
from mbridge_peft.naming import global_names
from mbridge_peft.wrappers import AdapterWrapper


def as_chunks(model: Any) -> list[nn.Module]:
    return list(model) if isinstance(model, (list, tuple)) else [model]


def unwrap(module: nn.Module) -> nn.Module:
    """The bare model inside megatron's DDP / Float16Module wrappers."""
    while hasattr(module, "module") and isinstance(module.module, nn.Module):
        module = module.module
    return module


class PEFT:
    """Base of LoRA and DoRA. Subclasses implement ``wrap`` for one linear."""

    def wrap(self, name: str, module: nn.Module, layout: LinearLayout,
             generator: torch.Generator) -> AdapterWrapper:
        raise NotImplementedError

    def targets(self) -> tuple[list[str], list[str]]:
        return list(getattr(self, "target_modules", None) or []), list(
            getattr(self, "exclude_modules", None) or [])

    def __call__(self, model: Any, training: bool = True) -> Any:
        """Wrap the targeted linears of ``model`` (a module or a list of chunks) in place and
        freeze the base; returns ``model``. Applying it twice wraps nothing new."""
        chunks = [unwrap(c) for c in as_chunks(model)]
        found = []  # (chunk, local name, global name, module, layout)
        for chunk in chunks:
            names = global_names(chunk)
            found += [(chunk, local, names[local], module, layout)
                      for local, module, layout in linear_modules(chunk)]
        include, exclude = self.targets()
        chosen = set(select_everywhere([f[2] for f in found], include, exclude))
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # same on every rank of a DP/TP group
        for chunk, local, name, module, layout in found:
            if name in chosen and not isinstance(module, AdapterWrapper):
                generator = torch.Generator().manual_seed(seed ^ zlib.crc32(name.encode()))
                _replace(chunk, local, self.wrap(name, module, layout, generator))
        for chunk in chunks:
            set_trainable(chunk, training)
        return model


def select_everywhere(names: list[str], include: list[str], exclude: list[str]) -> list[str]:
    """``matching.select`` where a pattern only has to match on *some* rank: with pipeline
    parallelism layer 0 lives on the first stage only."""
    patterns = include + exclude
    hits = torch.tensor([any(matching.matches(p, n) for n in names) for p in patterns],
                        dtype=torch.int64)
    if patterns and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        device = torch.device("cuda", torch.cuda.current_device()) if (
            torch.distributed.get_backend() == "nccl") else torch.device("cpu")
        hits = hits.to(device)
        torch.distributed.all_reduce(hits, op=torch.distributed.ReduceOp.MAX)
        hits = hits.cpu()
    missing = [p for p, hit in zip(patterns, hits.tolist()) if not hit]
    if missing:
        kind = "exclude_modules" if missing[0] in exclude else "target_modules"
        raise matching.TargetError(f"{kind}: {missing[0]!r} matches no linear module; "
                                   f"available: {matching.describe_names(names)}")
    local_patterns = [p for p in include if any(matching.matches(p, n) for n in names)]
    local_excludes = [p for p in exclude if any(matching.matches(p, n) for n in names)]
    if include and not local_patterns:
        return []  # every target lives on another pipeline stage
    return matching.select(names, local_patterns, local_excludes)


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def wrappers(model: Any) -> list[tuple[str, AdapterWrapper]]:
    """(global name, wrapper) for every adapted linear of ``model`` (module or chunks)."""
    found = []
    for chunk in as_chunks(model):
        chunk = unwrap(chunk)
        names = global_names(chunk)
        found += [(names[n], m) for n, m in chunk.named_modules() if isinstance(m, AdapterWrapper)]
    return found


def set_trainable(model: Any, training: bool = True) -> None:
    """Freeze every parameter except the adapters' (which train when ``training``)."""
    for chunk in as_chunks(model):
        for parameter in chunk.parameters():
            parameter.requires_grad_(False)
        for _, wrapper in wrappers(chunk):
            for parameter in wrapper.adapter.parameters():
                parameter.requires_grad_(training)


def trainable_parameters(model: Any) -> dict[str, nn.Parameter]:
    """Parameters that require grad, by name (``<chunk>.`` prefixed when there are chunks)."""
    chunks = as_chunks(model)
    out = {}
    for index, chunk in enumerate(chunks):
        prefix = f"{index}." if len(chunks) > 1 else ""
        out.update({prefix + n: p for n, p in chunk.named_parameters() if p.requires_grad})
    return out
