"""write_sharded streams each tensor to disk (one tensor in memory, not one shard): whatever the
tensors, dtypes and shard limit, the shards load back bit-exactly with safetensors and the index
names each tensor's file."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from hypothesis import given
from hypothesis import strategies as st

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.int8, torch.bool]


@st.composite
def tensor_lists(draw):
    count = draw(st.integers(1, 8))
    out = []
    for i in range(count):
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
        dtype = draw(st.sampled_from(DTYPES))
        seed = draw(st.integers(0, 2**16))
        values = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 50
        out.append((f"model.layers.{i}.w", values.to(dtype)))
    return out


@given(tensor_lists(), st.integers(1, 400))
def test_shards_load_back_bit_exactly_with_a_matching_index(tensors, limit):
    from safetensors.torch import load_file

    from mbridge_models.conversion.hf_io import INDEX, write_sharded

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_sharded(iter(tensors), folder, max_shard_size=limit)
        index = json.loads((folder / INDEX).read_text())
        loaded = {}
        for file in sorted(set(index["weight_map"].values())):
            for name, tensor in load_file(str(folder / file)).items():
                assert index["weight_map"][name] == file
                loaded[name] = tensor
        assert sorted(loaded) == sorted(name for name, _ in tensors)
        for name, tensor in tensors:
            assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
        assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size()
                                                      for _, t in tensors)
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]
