"""Hugging Face interop on a tiny random Llama (made here, nothing downloaded):

* a Llama checkpoint converted into a megatron GPTModel gives the Hugging Face logits;
* LoRA / DoRA adapters trained (here: randomised, B non-zero) on the megatron model, exported in
  Hugging Face PEFT format and loaded with ``peft.PeftModel.from_pretrained`` onto the Hugging
  Face model give mbridge's logits.

fp32; tolerance atol 1e-4 / rtol 1e-4 (different attention and matmul kernels, same math).
"""

import json
import os

import pytest
import torch

import peft_helpers as h
from multirank import run_ranks

pytestmark = pytest.mark.multiproc

# Everything is local: never let transformers / huggingface_hub wait on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOL = dict(atol=1e-4, rtol=1e-4)


def _converted_logits(hf_dir, ids):
    """Logits of a megatron GPTModel built from a Hugging Face config + checkpoint dir."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from mbridge_models.conversion.llama import load_hf_weights, provider_from_hf_config

    provider = provider_from_hf_config(AutoConfig.from_pretrained(hf_dir),
                                       transformer_layer_spec="mbridge_local",
                                       use_cpu_initialization=True, seq_length=ids.shape[1])
    model = h.build(provider)
    load_hf_weights(model, load_file(f"{hf_dir}/model.safetensors"), provider)
    positions = torch.arange(ids.shape[1]).unsqueeze(0).expand(ids.shape[0], -1)
    return h.logits(model, ids, positions)


def _megatron_side(rank, world_size, hf_dir, out_dirs, ids, qwen_dir):
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from mbridge_models.conversion.llama import load_hf_weights, provider_from_hf_config
    from mbridge_peft import DoRA, LoRA, export_hf_peft

    config = AutoConfig.from_pretrained(hf_dir)
    provider = provider_from_hf_config(config, transformer_layer_spec="mbridge_local",
                                       use_cpu_initialization=True, seq_length=ids.shape[1])
    hf_state = load_file(f"{hf_dir}/model.safetensors")
    positions = torch.arange(ids.shape[1]).unsqueeze(0).expand(ids.shape[0], -1)
    results = {}
    for method, peft in [("lora", LoRA(dim=4, alpha=8)),
                         ("dora", DoRA(dim=4, alpha=8,
                                       target_modules=["linear_qkv", "*.layers.1.*.linear_fc1",
                                                       "linear_fc2"]))]:
        model = h.build(provider)
        load_hf_weights(model, hf_state, provider)
        base = h.logits(model, ids, positions)
        peft(model)
        h.randomise_adapters(model, seed=5, scale=0.3)
        adapted = h.logits(model, ids, positions)
        export_hf_peft(model, provider, out_dirs[method])
        results[method] = (base, adapted)
    results["qwen2"] = _converted_logits(qwen_dir, ids)
    return results


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64)
    hf_dir = tmp_path_factory.mktemp("llama")
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(hf_dir)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hf_logits = model(ids).logits
    qwen_dir, qwen_logits = _tiny_qwen2(tmp_path_factory.mktemp("qwen2"), ids)
    out_dirs = {m: str(tmp_path_factory.mktemp(m)) for m in ("lora", "dora")}
    megatron, = run_ranks(_megatron_side, 1, str(hf_dir), out_dirs, ids, str(qwen_dir))
    return dict(hf_dir=hf_dir, ids=ids, hf_logits=hf_logits, out_dirs=out_dirs, megatron=megatron,
                qwen_logits=qwen_logits)


def _tiny_qwen2(directory, ids):
    """Qwen2 differs from Llama by its q/k/v biases (fused like the weights)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # random, not zero, biases
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
        logits = model(ids).logits
    model.save_pretrained(directory)
    return directory, logits


def test_converted_llama_matches_hugging_face(run):
    base, _ = run["megatron"]["lora"]
    torch.testing.assert_close(base, run["hf_logits"], **TOL)


def test_converted_qwen2_with_qkv_bias_matches_hugging_face(run):
    torch.testing.assert_close(run["megatron"]["qwen2"], run["qwen_logits"], **TOL)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_peft_library_reproduces_mbridge_adapters(run, method):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    base, adapted = run["megatron"][method]
    assert (adapted - base).abs().max() > 1e-2  # the adapters matter
    hf = LlamaForCausalLM.from_pretrained(run["hf_dir"]).eval()
    peft_model = PeftModel.from_pretrained(hf, run["out_dirs"][method]).eval()
    with torch.no_grad():
        logits = peft_model(run["ids"]).logits
    torch.testing.assert_close(logits, adapted, **TOL)


def test_exported_config_names_hugging_face_projections(run):
    with open(f"{run['out_dirs']['dora']}/adapter_config.json") as f:
        config = json.load(f)
    assert config["peft_type"] == "LORA" and config["use_dora"] is True
    assert (config["r"], config["lora_alpha"]) == (4, 8)
    assert config["target_modules"] == sorted(
        [f"model.layers.{i}.self_attn.{p}_proj" for i in (0, 1) for p in "qkv"]
        + ["model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj"]
        + [f"model.layers.{i}.mlp.down_proj" for i in (0, 1)])
