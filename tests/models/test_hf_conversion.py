"""Mapping registry: every family imports into megatron-core with Hugging Face's logits, and
exports back bit-exactly (fp32, CPU, TP=1; max |logit diff| < 1e-4)."""

from __future__ import annotations

import pytest
import torch
from hf_families import make_families
from multirank import run_ranks

pytestmark = pytest.mark.multiproc


def _convert(rank, world_size, families, ids):
    from megatron.core import parallel_state

    from mbridge_models.conversion import get_architecture, provider_from_hf_config
    from mbridge_models.conversion.hf_io import HFWeights
    from mbridge_models.conversion.weights import export_hf_weights, load_hf_weights
    import json

    results = {}
    for name, folder in families.items():
        config = json.load(open(f"{folder}/config.json"))
        provider = provider_from_hf_config(config, transformer_layer_spec="mbridge_local",
                                           use_cpu_initialization=True, seq_length=ids.shape[1])
        if not parallel_state.model_parallel_is_initialized():
            provider.initialize_model_parallel(seed=123)
        model = provider.provide()
        arch = get_architecture(config)
        load_hf_weights(model, HFWeights(folder), provider, arch)
        with torch.no_grad():
            logits = model(ids, torch.arange(ids.shape[1]).expand(ids.shape[0], -1), None)
        exported = dict(export_hf_weights(model, provider, arch))
        results[name] = (logits, exported, provider.window_size, provider.rope_scaling)
    parallel_state.destroy_model_parallel()
    return results


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    families, ids = make_families(tmp_path_factory.mktemp("hf"))
    (results,) = run_ranks(_convert, 1, {n: f for n, (f, _) in families.items()}, ids)
    return families, results


FAMILIES = ["llama", "llama_tied", "mistral", "qwen2", "qwen3", "qwen3_moe", "qwen3_moe_raw"]


@pytest.mark.parametrize("family", FAMILIES)
def test_megatron_logits_equal_hugging_face(converted, family):
    families, results = converted
    expected = families[family][1]
    logits = results[family][0]
    assert (logits - expected).abs().max() < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_export_reproduces_every_tensor_bit_exactly(converted, family):
    from safetensors.torch import load_file

    families, results = converted
    original = load_file(f"{families[family][0]}/model.safetensors")
    exported = results[family][1]
    assert sorted(exported) == sorted(original)
    for name, tensor in original.items():
        assert exported[name].dtype == tensor.dtype, name
        assert torch.equal(exported[name], tensor), name


def test_config_features_reach_the_provider(converted):
    _, results = converted
    assert results["mistral"][2] == (3, 0)
    assert results["llama"][3] and results["llama_tied"][3]
    assert "lm_head.weight" not in results["llama_tied"][1]
