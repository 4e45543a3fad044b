"""Per-file checksums of a checkpoint folder, so a corrupted or truncated shard is named and
never loaded.

``write_manifest`` (collective) hashes every file of an iteration folder once the save is on
disk and writes ``checksums.json`` into it (temp name + rename) before the tracker moves;
``verify`` (collective) re-hashes at load and returns the first file whose size or checksum
differs. Each rank hashes the shards it wrote (``__<rank>_<k>.distcp``, still in its page
cache), rank 0 the shared files, each rank over a few threads, so the cost is one extra read of
the largest rank's share (none for an async save: its background writer records the checksums
of what it wrote, ``record_written``, and the manifest takes those).
CRC-32 (zlib, streamed in 8 MiB chunks) is the hash: in the standard library, ~2 GB/s per
core, and it catches garbage and truncation, which is what it is for (not an attacker).

Both return this rank's hashing cost (``HashCost``: files, bytes, seconds), the manifest keeps
the slowest rank's seconds (``hash_seconds``) and ``measure`` times one process hashing a whole
folder, so a benchmark can report the price.
A folder without a manifest (saved before checksums existed) is loaded unverified.
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from dataclasses import dataclass

from mbridge_train.atomic_file import replace_bytes

MANIFEST = "checksums.json"
ALGORITHM = "crc32"
CHUNK = 8 << 20
_SHARD = re.compile(r"^__(\d+)_\d+\.distcp$")
_RECORDED = ".checksums.rank{rank}.json"  # what an async save's writer hashed (record_written)


@dataclass(frozen=True)
class HashCost:
    """What one rank hashed: files, bytes and wall seconds (the price of checksums)."""

    files: int
    bytes: int
    seconds: float


def file_checksum(path: str) -> tuple[int, str]:
    """(size in bytes, CRC-32 as 8 hex digits) of one file, streamed."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, f"{crc & 0xFFFFFFFF:08x}"


def folder_files(directory: str) -> list[str]:
    """Every file under ``directory`` (relative, '/'-separated, sorted), the manifest and our
    temp files excepted."""
    names = []
    for parent, _, files in os.walk(directory):
        for name in files:
            if name == MANIFEST or name.startswith((f".{MANIFEST}.", ".checksums.rank")):
                continue
            rel = os.path.relpath(os.path.join(parent, name), directory)
            names.append(rel.replace(os.sep, "/"))
    return sorted(names)


def owner(name: str, world_size: int) -> int:
    """The rank that hashes ``name``: the writer of a ``__R_k.distcp`` shard, rank 0 for the
    rest (and for shards of ranks this world does not have)."""
    match = _SHARD.match(name)
    return int(match.group(1)) % world_size if match else 0


def record_written(paths: list[str], rank: int) -> None:
    """Checksums of the files this rank just wrote, computed by the background writer of an
    async save while training goes on: ``write_manifest`` then takes them instead of reading
    the files again in the training process."""
    if not paths:
        return
    sums = _in_threads(file_checksum, paths)
    entries = {os.path.basename(path): list(result) for path, result in zip(paths, sums)}
    replace_bytes(os.path.join(os.path.dirname(paths[0]), _RECORDED.format(rank=rank)),
                  json.dumps(entries).encode())


def _recorded(directory: str, rank: int) -> dict[str, list]:
    path = os.path.join(directory, _RECORDED.format(rank=rank))
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def hash_share(directory: str, names: list[str], rank: int,
               world_size: int) -> tuple[dict[str, list], HashCost]:
    """{name: [size, crc]} of this rank's share of ``names``, and what it cost (files the
    writer recorded, at their current size, are not read again)."""
    began = time.perf_counter()
    mine = [name for name in names if owner(name, world_size) == rank]
    recorded = _recorded(directory, rank)
    entries = {name: recorded[name] for name in mine if name in recorded
               and recorded[name][0] == os.path.getsize(os.path.join(directory, name))}
    left = [name for name in mine if name not in entries]
    sums = _in_threads(file_checksum, [os.path.join(directory, name) for name in left])
    entries.update({name: list(result) for name, result in zip(left, sums)})
    seconds = time.perf_counter() - began
    return entries, HashCost(len(entries), sum(size for size, _ in entries.values()), seconds)


def write_manifest(directory: str) -> HashCost:
    """Hash the folder (every rank its share) and write its manifest on rank 0 (collective:
    call on every rank, after all ranks' files are written). Returns this rank's cost."""
    rank, world = _rank(), _world_size()
    names = folder_files(directory) if rank == 0 else None
    names = broadcast(names)
    entries, cost = hash_share(directory, names, rank, world)
    gathered = _gather((entries, cost.seconds))
    try:
        os.remove(os.path.join(directory, _RECORDED.format(rank=rank)))
    except FileNotFoundError:
        pass
    if rank == 0:
        files = {}
        for part, _ in gathered:
            files.update(part)
        slowest = max(seconds for _, seconds in gathered)
        lines = [f'  {json.dumps(name)}: {json.dumps(entry)}' for name, entry in
                 sorted(files.items())]
        text = (f'{{"algorithm": "{ALGORITHM}", "hash_seconds": {slowest:.6f},\n "files": {{\n'
                + ",\n".join(lines) + "\n}}\n")
        replace_bytes(os.path.join(directory, MANIFEST), text.encode())
    return cost


def measure(directory: str) -> HashCost:
    """What hashing the whole folder costs in this one process (for benchmarks; the save
    spreads it over the writing ranks, ``hash_seconds`` in the manifest is the slowest's)."""
    return hash_share(directory, folder_files(directory), 0, 1)[1]


def read_manifest(directory: str) -> dict | None:
    """{name: (size, crc)} of a folder's manifest; None when it has none. A manifest that
    cannot be read is a problem of its own (raised as ValueError naming it)."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("algorithm") != ALGORITHM:
            raise ValueError(f"unknown algorithm {data.get('algorithm')!r}")
        return {name: (int(size), str(crc)) for name, (size, crc) in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: unreadable checksum manifest ({error})") from None


def problems(directory: str, expected: dict, rank: int = 0,
             world_size: int = 1) -> tuple[list[str], HashCost]:
    """This rank's share of the mismatches between the folder and its manifest, each as
    '<file>: <what>' (missing, truncated, wrong checksum), and what checking cost."""
    began = time.perf_counter()
    found, to_hash = [], []
    for name, (size, crc) in sorted(expected.items()):
        if owner(name, world_size) != rank:
            continue
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            found.append(f"{path}: missing (listed in {MANIFEST})")
            continue
        actual = os.path.getsize(path)
        if actual != size:
            what = "truncated" if actual < size else "longer than saved"
            found.append(f"{path}: {what} ({actual} bytes, saved with {size})")
            continue
        to_hash.append((path, size, crc))
    sums = _in_threads(file_checksum, [path for path, _, _ in to_hash])
    for (path, _, crc), (_, actual) in zip(to_hash, sums):
        if actual != crc:
            found.append(f"{path}: corrupt ({ALGORITHM} differs from the one saved in "
                         f"{MANIFEST})")
    cost = HashCost(len(to_hash), sum(size for _, size, _ in to_hash), time.perf_counter() - began)
    return sorted(found), cost


def verify(directory: str) -> tuple[str | None, HashCost]:
    """(the first problem of the folder on any rank, or None; this rank's cost). Collective:
    every rank checks its share and all get the same answer. No manifest: (None, zero cost)."""
    try:
        expected = read_manifest(directory)
        error = None
    except ValueError as bad:
        expected, error = None, str(bad)
    if expected is None:
        return error, HashCost(0, 0, 0.0)
    found, cost = problems(directory, expected, _rank(), _world_size())
    everywhere = [p for part in _all_gather(found) for p in part]
    return (sorted(everywhere)[0] if everywhere else None), cost


def is_complete(directory: str) -> bool:
    """Whether a folder holds a manifest (the last thing a save writes before the tracker)."""
    return os.path.isfile(os.path.join(directory, MANIFEST))


# ----------------------------------------------------------------------------- helpers


def _in_threads(fn, items: list) -> list:
    """``[fn(item) ...]`` over a few threads: zlib.crc32 releases the GIL on large buffers,
    so a rank's several shard files are hashed in parallel."""
    if len(items) < 2:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    workers = min(len(items), 8, len(os.sched_getaffinity(0)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _distributed() -> bool:
    import torch

    return torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def _rank() -> int:
    import torch

    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _world_size() -> int:
    import torch

    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def broadcast(value):
    """Rank 0's ``value`` on every rank (as is without a process group)."""
    if not _distributed():
        return value
    import torch

    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _all_gather(value) -> list:
    if not _distributed():
        return [value]
    import torch

    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, value)
    return out


def _gather(value) -> list:
    return _all_gather(value)
