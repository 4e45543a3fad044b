"""Mapping registry: every family imports into megatron-core with Hugging Face's logits, and
exports back bit-exactly (fp32, CPU, max |logit diff| < 1e-4): every family at TP=1, and on two
CPU ranks at TP=2 (with and without sequence parallelism), PP=2 and EP=2."""

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


FAMILIES = ["llama", "llama_tied", "mistral", "qwen2", "qwen3", "qwen3_moe", "qwen3_moe_raw",
            "nemotron", "deepseek_v2", "deepseek_v3", "deepseek_v3_yarn"]


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


# ---------------------------------------------------------------------- parallel layouts


def _convert_parallel(rank, world_size, folder, ids, layout):
    """Import on a 2-rank layout, run the forward (pipeline stages by hand), export."""
    import json

    from megatron.core import parallel_state

    from mbridge_models.conversion import get_architecture, provider_from_hf_config
    from mbridge_models.conversion.hf_io import HFWeights
    from mbridge_models.conversion.weights import export_hf_weights, load_hf_weights

    config = json.load(open(f"{folder}/config.json"))
    provider = provider_from_hf_config(config, transformer_layer_spec="mbridge_local",
                                       use_cpu_initialization=True, seq_length=ids.shape[1],
                                       parallel_output=False, **layout)
    provider.initialize_model_parallel(seed=123)
    model = provider.provide().eval()
    arch = get_architecture(config)
    load_hf_weights(model, HFWeights(folder), provider, arch)
    positions = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
    stages = parallel_state.get_pipeline_model_parallel_world_size()
    stage = parallel_state.get_pipeline_model_parallel_rank()
    with torch.no_grad():
        if stage > 0:
            hidden = torch.empty(ids.shape[1], ids.shape[0], provider.hidden_size)
            torch.distributed.recv(hidden, parallel_state.get_pipeline_model_parallel_prev_rank())
            model.set_input_tensor(hidden)
        out = model(ids, positions, None)
        if stage < stages - 1:
            torch.distributed.send(out.contiguous(),
                                   parallel_state.get_pipeline_model_parallel_next_rank())
            out = None
    exported = dict(export_hf_weights(model, provider, arch))
    parallel_state.destroy_model_parallel()
    return out, exported


@pytest.fixture(scope="module")
def parallel_families(tmp_path_factory):
    return make_families(tmp_path_factory.mktemp("hf_parallel"), names=["qwen3", "qwen3_moe", "nemotron", "deepseek_v2", "deepseek_v3"])


LAYOUTS = {"tp2": dict(tensor_model_parallel_size=2), "pp2": dict(pipeline_model_parallel_size=2),
           # megatron-core 0.19's alltoall dispatcher hands gloo split sizes as tensors.
           "ep2": dict(expert_model_parallel_size=2, moe_token_dispatcher_type="allgather"),
           "tp2_sp": dict(tensor_model_parallel_size=2, sequence_parallel=True)}


def _slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


# ~5 s each on 2 CPU ranks: expert parallelism (the newest path) runs by default.
@pytest.mark.parametrize("family, layout", [
    ("qwen3_moe", "ep2"), _slow("qwen3_moe", "tp2"), _slow("qwen3_moe", "tp2_sp"),
    _slow("qwen3_moe", "pp2"), _slow("qwen3", "tp2"), _slow("qwen3", "pp2"),
    _slow("nemotron", "tp2_sp"), _slow("nemotron", "pp2"),
    *[_slow(family, layout) for family in ("deepseek_v2", "deepseek_v3")
      for layout in ("ep2", "tp2", "pp2")]])
def test_parallel_layouts_reproduce_logits_and_export_bit_exactly(parallel_families, family,
                                                                  layout):
    from safetensors.torch import load_file

    families, ids = parallel_families
    folder, expected = families[family]
    ranks = run_ranks(_convert_parallel, 2, folder, ids, LAYOUTS[layout])
    original = load_file(f"{folder}/model.safetensors")
    for logits, exported in ranks:
        if logits is not None:  # the last pipeline stage (every rank without pipelining)
            assert (logits - expected).abs().max() < 1e-4
        assert sorted(exported) == sorted(original)
        assert all(torch.equal(exported[n], t) for n, t in original.items())
    assert ranks[-1][0] is not None


# ---------------------------------------------------------------------- grouped GEMM experts


def test_grouped_gemm_expert_names_become_global_sequential_ones():
    from mbridge_models.conversion.weights import _canonical

    assert (_canonical("decoder.layers.0.mlp.experts.linear_fc1.weight3", 2, 4)
            == "decoder.layers.2.mlp.experts.local_experts.7.linear_fc1.weight")
    assert (_canonical("decoder.layers.1.mlp.experts.local_experts.0.linear_fc2.weight", 0, 2)
            == "decoder.layers.1.mlp.experts.local_experts.2.linear_fc2.weight")


def _convert_te_grouped(rank, world_size, folder, ids):
    import json

    from megatron.core import parallel_state

    from mbridge_models.conversion import get_architecture, provider_from_hf_config
    from mbridge_models.conversion.hf_io import HFWeights
    from mbridge_models.conversion.weights import export_hf_weights, load_hf_weights

    config = json.load(open(f"{folder}/config.json"))
    provider = provider_from_hf_config(config, transformer_layer_spec="te", moe_grouped_gemm=True,
                                       seq_length=ids.shape[1])
    provider.initialize_model_parallel(seed=123)
    model = provider.provide().cuda().eval()
    names = [n for n, _ in model.named_parameters()]
    arch = get_architecture(config)
    load_hf_weights(model, HFWeights(folder), provider, arch)
    ids = ids.cuda()
    with torch.no_grad():
        logits = model(ids, torch.arange(ids.shape[1], device="cuda").expand(ids.shape[0], -1),
                       None).cpu()
    exported = dict(export_hf_weights(model, provider, arch))
    parallel_state.destroy_model_parallel()
    return logits, exported, names


@pytest.mark.gpu
def test_te_grouped_gemm_experts_import_and_export(tmp_path):
    """Transformer Engine's grouped experts (``linear_fc1.weight<e>``) map like sequential ones.
    GPU fp32 GEMMs may use TF32: logits within 2e-3."""
    from safetensors.torch import load_file

    families, ids = make_families(tmp_path, names=["qwen3_moe"])
    folder, expected = families["qwen3_moe"]
    ((logits, exported, names),) = run_ranks(_convert_te_grouped, 1, folder, ids)
    assert any(".experts.linear_fc1.weight" in n for n in names), names  # really grouped
    assert (logits[..., :expected.shape[-1]] - expected).abs().max() < 2e-3
    original = load_file(f"{folder}/model.safetensors")
    assert sorted(exported) == sorted(original)
    assert all(torch.equal(exported[n], t) for n, t in original.items())
