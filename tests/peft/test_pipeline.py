"""Pipeline parallelism: targets and adapter checkpoints use global layer names.

Two CPU ranks each hold one of the two layers (as ``decoder.layers.0`` locally). A wildcard on
global layer 1 wraps only the second stage's layer (and is no error on the first stage, which has
no match), and an adapter checkpoint saved under PP=2 loads into a PP=1 model.
"""

import pytest
import torch

import peft_helpers as h
from multirank import run_ranks

pytestmark = pytest.mark.multiproc


def _pp2(rank, world_size, directory):
    from mbridge_peft import LoRA, adapter_state_dict, save_adapters, wrappers

    provider = h.tiny_provider(pipeline_model_parallel_size=2, pipeline_dtype=torch.float32)
    model = h.build(provider)
    local_layers = [n for n, _ in model.named_modules() if n.startswith("decoder.layers.")
                    and n.count(".") == 2]
    LoRA(target_modules=["*.layers.1.*.linear_qkv", "linear_fc2"], dim=4)(model)
    wrapped = [name for name, _ in wrappers(model)]
    h.randomise_adapters(model, seed=rank)
    mine = adapter_state_dict(model)
    save_adapters(model, directory)
    return dict(local_layers=local_layers, wrapped=wrapped, mine=mine)


def _pp1(rank, world_size, directory):
    from mbridge_peft import LoRA, adapter_state_dict, load_adapters

    model = h.build(h.tiny_provider())
    LoRA(target_modules=["*.layers.1.*.linear_qkv", "linear_fc2"], dim=4)(model)
    load_adapters(model, directory)
    return adapter_state_dict(model)


def test_global_names_across_pipeline_stages(tmp_path):
    stage0, stage1 = run_ranks(_pp2, 2, str(tmp_path))
    assert stage0["local_layers"] == stage1["local_layers"] == ["decoder.layers.0"]
    assert stage0["wrapped"] == ["decoder.layers.0.mlp.linear_fc2"]
    assert stage1["wrapped"] == ["decoder.layers.1.self_attention.linear_qkv",
                                 "decoder.layers.1.mlp.linear_fc2"]
    loaded, = run_ranks(_pp1, 1, str(tmp_path))
    saved = {**stage0["mine"], **stage1["mine"]}
    assert sorted(loaded) == sorted(saved) and len(saved) == 6
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key
