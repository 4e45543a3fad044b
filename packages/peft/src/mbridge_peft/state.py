"""Adapter-only state: local and full (unsharded) tensors, and adapter checkpoints on disk.

Keys are ``<global module name>.adapter.<param>`` (see naming), and checkpoint tensors are full
(gathered over tensor parallelism), so an adapter checkpoint loads under any tensor/pipeline
layout of the same model. Files are written to a temporary name and renamed, so a crash never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mbridge_peft.base import wrappers

WEIGHTS_FILE = "mbridge_adapter.safetensors"
CONFIG_FILE = "mbridge_adapter.json"


class AdapterCheckpointError(RuntimeError):
    """An adapter checkpoint is missing, unreadable, or does not fit the model."""


def adapter_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """This rank's adapter tensors (detached, TP shards as held)."""
    out = {}
    for name, wrapper in wrappers(model):
        for key, value in wrapper.adapter.state_dict().items():
            out[f"{name}.adapter.{key}"] = value.detach()
    return out


def full_adapter_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """This rank's adapters as full tensors on the CPU (gathered over each layer's TP group;
    every TP rank must call it)."""
    out = {}
    for name, wrapper in wrappers(model):
        adapter, group = wrapper.adapter, wrapper.layout.tp_group
        for key, value in adapter.state_dict().items():
            value = value.detach()
            if key in adapter.sharded_dims() and wrapper.layout.tp_size > 1:
                shards = [torch.empty_like(value) for _ in range(wrapper.layout.tp_size)]
                torch.distributed.all_gather(shards, value.contiguous(), group=group)
                value = adapter.unshard(key, shards)
            out[f"{name}.adapter.{key}"] = value.cpu().clone()
    return out


def collect_full_adapter_state(model: Any) -> dict[str, torch.Tensor] | None:
    """The whole model's full adapter tensors on global rank 0 (None elsewhere); with one
    process (or no process group) the local ones."""
    local = full_adapter_state_dict(model)
    if not _distributed():
        return local
    parts = [None] * torch.distributed.get_world_size() if _rank() == 0 else None
    torch.distributed.gather_object(local, parts, dst=0)
    if _rank() != 0:
        return None
    merged: dict[str, torch.Tensor] = {}
    for part in parts:
        merged.update(part)
    return merged


@torch.no_grad()
def load_full_adapter_state(model: Any, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Copy full adapter tensors into this rank's adapters (each takes its TP shard)."""
    missing = []
    for name, wrapper in wrappers(model):
        adapter = wrapper.adapter
        for key, param in adapter.state_dict(keep_vars=True).items():
            full_key = f"{name}.adapter.{key}"
            if full_key not in state:
                missing.append(full_key)
                continue
            local = adapter.shard(key, state[full_key])
            if local.shape != param.shape:
                raise AdapterCheckpointError(f"{full_key}: checkpoint shape "
                                             f"{tuple(state[full_key].shape)} does not fit this "
                                             f"model (local shard {tuple(param.shape)})")
            param.copy_(local)
    if missing and strict:
        raise AdapterCheckpointError(f"adapter checkpoint lacks {len(missing)} tensors, e.g. "
                                     f"{missing[0]}")


def save_adapters(model: Any, directory: str | os.PathLike, config: Any = None) -> Path | None:
    """Write the full adapter tensors (and ``config``, e.g. the LoRA object) to ``directory``.

    Collective: every rank calls it; global rank 0 writes. Returns the weights path on rank 0.
    """
    state = collect_full_adapter_state(model)
    path = None
    if state is not None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / WEIGHTS_FILE
        atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in state.items()}, tmp))
        meta = {"method": type(config).__name__ if config is not None else None,
                "config": _plain(config), "tensors": len(state)}
        atomic_write(directory / CONFIG_FILE,
                     lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    if _distributed():
        torch.distributed.barrier()
    return path


def load_adapters(model: Any, directory: str | os.PathLike, strict: bool = True) -> None:
    """Load an adapter checkpoint written by ``save_adapters`` (any TP/PP layout)."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise AdapterCheckpointError(f"{path}: no adapter checkpoint here")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise AdapterCheckpointError(f"{path}: unreadable adapter checkpoint ({error})") from None
    load_full_adapter_state(model, state, strict=strict)


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename over ``path``; the temporary file never survives."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _plain(config: Any) -> Any:
    import dataclasses

    if config is None or not dataclasses.is_dataclass(config):
        return None
    return {f.name: (str(v) if isinstance(v := getattr(config, f.name), torch.dtype) else v)
            for f in dataclasses.fields(config)}


def _distributed() -> bool:
    return torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
