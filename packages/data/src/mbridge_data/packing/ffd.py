"""First-fit-decreasing bin packing of sequence lengths into packs of a fixed capacity.

Longest sequences first, each into the first pack with room. "First pack with room" is found in
O(log packs) with a max-tree over the packs' free space, so packing 10^6 sequences stays fast.
FFD uses at most 11/9 OPT + 6/9 packs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices into ``lengths`` for each pack, packs in order of opening; raises if one is too
    long. Every index appears in exactly one pack and no pack's lengths sum above capacity."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and (lengths.max() > capacity or lengths.min() < 0):
        worst = int(lengths.max())
        raise ValueError(f"a sequence of {worst} tokens does not fit a pack of {capacity}")
    order = np.argsort(-lengths, kind="stable")
    size = 1
    while size < max(1, len(lengths)):
        size *= 2
    free = [0] * (2 * size)  # free[size + b]: free space of pack b; inner nodes: max of children
    for leaf in range(size, 2 * size):
        free[leaf] = capacity
    for node in range(size - 1, 0, -1):
        free[node] = capacity
    packs: list[list[int]] = []
    for index in order.tolist():
        need = int(lengths[index])
        node = 1
        while node < size:  # descend to the leftmost pack with free >= need
            node = 2 * node if free[2 * node] >= need else 2 * node + 1
        pack = node - size
        if pack == len(packs):
            packs.append([])
        packs[pack].append(index)
        free[node] -= need
        node //= 2
        while node:
            free[node] = max(free[2 * node], free[2 * node + 1])
            node //= 2
    return packs
