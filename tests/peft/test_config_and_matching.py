"""LoRA/DoRA configuration, target matching and the fused-layout helpers (no model needed)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mbridge_config.protocols import PEFTProtocol
from mbridge_models.conversion.layout import (fuse_gated, fuse_qkv, shard_rows, split_gated,
                                              split_qkv, unshard_rows)
from mbridge_peft import DoRA, LoRA, PEFTConfigError, TargetError
from mbridge_peft.matching import matches, select

NAMES = [f"decoder.layers.{i}.{m}" for i in range(3) for m in (
    "self_attention.linear_qkv", "self_attention.linear_proj", "mlp.linear_fc1", "mlp.linear_fc2")
] + ["output_layer"]


def test_megatron_bridge_fields_and_defaults():
    lora = LoRA()
    assert lora.target_modules == ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]
    assert (lora.dim, lora.alpha, lora.dropout, lora.dropout_position) == (32, 32, 0.0, "pre")
    assert (lora.lora_A_init_method, lora.lora_B_init_method) == ("xavier", "zero")
    assert lora.exclude_modules == [] and lora.a2a_experimental is False
    assert (DoRA().dim, DoRA().alpha) == (32, 64)
    spec = LoRA(target_modules=["linear_qkv", "linear_proj"], dim=32, alpha=16, dropout=0.0)
    assert spec.alpha == 16


def test_peft_objects_satisfy_the_config_protocol():
    assert isinstance(LoRA(), PEFTProtocol) and isinstance(DoRA(), PEFTProtocol)


def test_lora_round_trips_through_config_serialization():
    from mbridge_config.serialization import from_dict, to_dict

    lora = LoRA(target_modules=["*.layers.0.*.linear_qkv"], dim=8, alpha=16, dropout=0.1,
                lora_dtype=torch.bfloat16)
    data = to_dict(lora)
    assert data["_target_"].endswith("LoRA")
    assert from_dict(data, PEFTProtocol) == lora


@pytest.mark.parametrize("fields, field", [
    (dict(dim=0), "dim"), (dict(alpha=-1), "alpha"), (dict(dropout=1.0), "dropout"),
    (dict(dropout_position="middle"), "dropout_position"),
    (dict(lora_A_init_method="glorot"), "lora_A_init_method"),
    (dict(target_modules="linear_qkv"), "target_modules"),
])
def test_bad_fields_are_named(fields, field):
    with pytest.raises(PEFTConfigError, match=rf"LoRA\.{field}:"):
        LoRA(**fields)


@pytest.mark.parametrize("pattern, expected", [
    ("linear_qkv", [f"decoder.layers.{i}.self_attention.linear_qkv" for i in range(3)]),
    ("*.layers.0.*.linear_qkv", ["decoder.layers.0.self_attention.linear_qkv"]),
    ("decoder.layers.[12].mlp.*", [f"decoder.layers.{i}.mlp.linear_fc{j}" for i in (1, 2)
                                   for j in (1, 2)]),
    ("output_layer", ["output_layer"]),
])
def test_short_names_and_wildcards(pattern, expected):
    assert select(NAMES, [pattern]) == expected


def test_exclusions_and_all_linears():
    chosen = select(NAMES, [], ["output_layer", "*.layers.2.*"])
    assert len(chosen) == 8 and all("layers.2" not in n and n != "output_layer" for n in chosen)
    assert select(NAMES, ["linear_fc1"], ["*.layers.0.*"]) == [
        "decoder.layers.1.mlp.linear_fc1", "decoder.layers.2.mlp.linear_fc1"]


@pytest.mark.parametrize("targets, excludes", [(["linear_qvk"], []), (["*.layers.9.*"], []),
                                               (["linear_qkv"], ["nothing_here"])])
def test_a_pattern_matching_nothing_lists_the_linears(targets, excludes):
    with pytest.raises(TargetError) as info:
        select(NAMES, targets, excludes)
    message = str(info.value)
    assert "matches no linear module" in message
    assert "linear_qkv" in message and "linear_fc2" in message and "\n" not in message


def test_short_name_is_a_whole_component():
    assert not matches("qkv", "decoder.layers.0.self_attention.linear_qkv")
    assert matches("linear_qkv", "decoder.layers.0.self_attention.linear_qkv")


layouts = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3))


@given(layout=layouts)
def test_qkv_fuse_split_round_trip_and_group_order(layout):
    groups, heads_per_group, head_dim, cols = layout
    heads = groups * heads_per_group
    q = torch.arange(heads * head_dim * cols, dtype=torch.float32).reshape(-1, cols)
    k = -1 - torch.arange(groups * head_dim * cols, dtype=torch.float32).reshape(-1, cols)
    v = 1000 + torch.arange(groups * head_dim * cols, dtype=torch.float32).reshape(-1, cols)
    fused = fuse_qkv(q, k, v, groups)
    # Group g's rows: its query heads, then its key head, then its value head.
    per_group = (heads_per_group + 2) * head_dim
    first = fused[:per_group]
    assert torch.equal(first[:heads_per_group * head_dim], q[:heads_per_group * head_dim])
    assert torch.equal(first[heads_per_group * head_dim:-head_dim], k[:head_dim])
    for got, want in zip(split_qkv(fused, heads, groups), (q, k, v)):
        assert torch.equal(got, want)


@given(size=st.sampled_from([1, 2, 4]), rows=st.integers(1, 6), gated=st.booleans())
def test_row_shards_reassemble(size, rows, gated):
    full = torch.randn(2 * rows * size, 3)
    shards = [shard_rows(full, r, size, gated) for r in range(size)]
    assert torch.equal(unshard_rows(shards, gated), full)
    if gated:  # each rank holds [gate_r; up_r]
        gate, up = split_gated(full)
        assert torch.equal(shards[0], fuse_gated(gate.chunk(size)[0], up.chunk(size)[0]))
