"""A safetensors file written one tensor at a time, so an export holds one tensor, not one shard.

safetensors' ``save_file`` needs every tensor of a file in memory at once. Here the data goes
straight to disk after a reserved header region; closing the file writes the JSON header into
that region, padded with spaces (which the format allows: its own writer pads the same way).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from mbridge_models.conversion.errors import ConversionError

_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
           torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
           torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
           torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2"}
HEADER_RESERVE = 256 * 1024  # bytes; a header entry is ~150 bytes (name, dtype, shape, offsets)


class StreamingSafetensors:
    """``add(name, tensor)`` appends the tensor's bytes; ``close()`` writes the header.
    ``fits(name)`` says whether another entry still fits the reserved header."""

    def __init__(self, path: Path, metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.metadata = dict(metadata or {})
        self.entries: dict[str, dict] = {}
        self.offset = 0
        self._file = open(self.path, "wb")
        self._file.seek(8 + HEADER_RESERVE)

    def _header(self, extra: dict | None = None) -> bytes:
        entries = {"__metadata__": self.metadata, **self.entries, **(extra or {})}
        return json.dumps(entries, separators=(",", ":")).encode()

    def fits(self, name: str, shape: tuple[int, ...] = ()) -> bool:
        probe = {name: {"dtype": "BF16", "shape": list(shape),
                        "data_offsets": [2**62, 2**62]}}
        return len(self._header(probe)) <= HEADER_RESERVE

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if tensor.dtype not in _DTYPES:
            raise ConversionError(f"tensor {name}: dtype {tensor.dtype} has no safetensors name")
        data = tensor.detach().to("cpu").contiguous()
        nbytes = data.numel() * data.element_size()
        if nbytes:
            self._file.write(data.reshape(-1).view(torch.uint8).numpy().data)
        self.entries[name] = {"dtype": _DTYPES[data.dtype], "shape": list(data.shape),
                              "data_offsets": [self.offset, self.offset + nbytes]}
        self.offset += nbytes

    def close(self) -> None:
        header = self._header()
        if len(header) > HEADER_RESERVE:
            raise ConversionError(f"{self.path}: header of {len(header)} bytes exceeds the "
                                  f"{HEADER_RESERVE} reserved")
        self._file.seek(0)
        self._file.write(struct.pack("<Q", HEADER_RESERVE))
        self._file.write(header + b" " * (HEADER_RESERVE - len(header)))
        self._file.close()

    def abort(self) -> None:
        self._file.close()
