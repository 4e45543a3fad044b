"""Hugging Face safetensors folders: lazy, memory-mapped reading and streamed sharded writing.

Reading opens each file with ``safe_open`` (memory-mapped) and materialises only the tensors, or
row/column slices of them, that are asked for. Writing streams each tensor into its shard file
as it arrives (one tensor in memory) and publishes the folder by renaming a temp folder, so a
failed export leaves nothing at the target.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import torch

from mbridge_models.conversion.errors import ConversionError

INDEX = "model.safetensors.index.json"


class HFWeights:
    """The tensors of a Hugging Face folder (or one .safetensors file), read on demand."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._where: dict[str, Path] = {}
        self._handles: dict[Path, object] = {}
        files = [self.path] if self.path.is_file() else sorted(self.path.glob("*.safetensors"))
        if not files:
            raise ConversionError(f"{self.path}: no *.safetensors weights")
        for file in files:
            for name in self._open(file).keys():
                self._where[name] = file

    def _open(self, file: Path):
        handle = self._handles.get(file)
        if handle is None:
            from safetensors import safe_open

            try:
                handle = safe_open(str(file), framework="pt")
            except Exception as error:  # noqa: BLE001 - a bad file is one line naming it
                raise ConversionError(f"{file}: not a readable safetensors file "
                                      f"({_first_line(error)}); truncated or corrupt?") from None
            self._handles[file] = handle
        return handle

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def file_of(self, name: str) -> Path:
        if name not in self._where:
            raise ConversionError(f"{self.path}: has no tensor {name}")
        return self._where[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open(self.file_of(name)).get_slice(name).get_shape())

    def get(self, name: str, part: tuple[int, int, int] | None = None) -> torch.Tensor:
        """The tensor ``name``, or only ``part`` = (dim, start, stop) of it."""
        file = self.file_of(name)
        try:
            if part is None:
                return self._open(file).get_tensor(name)
            dim, start, stop = part
            view = self._open(file).get_slice(name)
            index = (slice(None),) * dim + (slice(start, stop),)
            return view[index]
        except ConversionError:
            raise
        except Exception as error:  # noqa: BLE001
            raise ConversionError(f"{file}: cannot read tensor {name} ({_first_line(error)}); "
                                  "truncated or corrupt?") from None


def parse_size(size: int | str) -> int:
    """5000000, "500MB", "2GB", "1GiB" -> bytes."""
    if isinstance(size, int):
        return size
    text = size.strip().upper()
    for suffix, scale in (("GIB", 2**30), ("MIB", 2**20), ("KIB", 2**10), ("GB", 10**9),
                          ("MB", 10**6), ("KB", 10**3), ("B", 1)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * scale)
    return int(text)


def write_sharded(tensors: Iterable[tuple[str, torch.Tensor]], directory: Path,
                  max_shard_size: int | str = "2GB", progress: Callable[[str], None] | None = None
                  ) -> dict:
    """Write ``(name, tensor)`` pairs as ``model-0000i-of-0000n.safetensors`` + the index into
    ``directory`` (an empty folder the caller publishes). Each tensor goes to disk as it comes
    (StreamingSafetensors): one tensor in memory, not one shard. One shard is written as
    ``model.safetensors`` (what transformers writes), still indexed."""
    from mbridge_models.conversion.stream_writer import StreamingSafetensors

    limit = parse_size(max_shard_size)
    shards: list[list[str]] = []
    writer = None
    size = total = 0

    def flush():
        nonlocal writer, size
        if writer is not None:
            writer.close()
            shards.append(list(writer.entries))
            writer, size = None, 0

    seen = set()
    try:
        for name, tensor in tensors:
            if name in seen:
                raise ConversionError(f"tensor {name} exported twice")
            seen.add(name)
            nbytes = tensor.numel() * tensor.element_size()
            if writer is not None and (size + nbytes > limit
                                       or not writer.fits(name, tuple(tensor.shape))):
                flush()
            if writer is None:
                writer = StreamingSafetensors(directory / f".shard-{len(shards):05d}",
                                              metadata={"format": "pt"})
            writer.add(name, tensor)
            size += nbytes
            total += nbytes
            if progress:
                progress(name)
        flush()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    weight_map = {}
    for i, names in enumerate(shards):
        final = ("model.safetensors" if len(shards) == 1
                 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
        os.replace(directory / f".shard-{i:05d}", directory / final)
        weight_map.update(dict.fromkeys(names, final))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return index


def publish(target: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp)`` on a temp folder beside ``target``, then rename it into place
    (replacing an existing ``target`` only after the new one is complete)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
