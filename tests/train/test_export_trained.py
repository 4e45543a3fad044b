"""A model trained a few steps in mbridge leaves mbridge from its checkpoint alone: the exported
Hugging Face folder's logits equal mbridge's (full fine-tune; LoRA merged), and the LoRA
adapter export loads in ``peft`` (fp32 CPU, atol 1e-4)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from multirank import run_ranks

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from hf_families import SEQ, make_families, save_tiny_tokenizer  # noqa: E402
from tiny_run import config as tiny_config  # noqa: E402
from tiny_run import preload  # noqa: E402

pytestmark = pytest.mark.multiproc
TOL = dict(atol=1e-4, rtol=1e-4)
VOCAB = 320  # >= the NullTokenizer's 300 of the tiny training config


def _logits(provider, ckpt, ids, peft=None):
    """mbridge's logits of a checkpoint (a fresh model; adapters unmerged)."""
    from megatron.core import parallel_state

    from mbridge_train.auto_bridge import _load_adapted
    from mbridge_train.checkpointing import find_checkpoint, load_pretrained_weights

    provider.initialize_model_parallel(seed=99)
    model = [provider.provide()]
    if peft:
        _load_adapted(model, Path(find_checkpoint(ckpt)))
    else:
        load_pretrained_weights(ckpt, model)
    with torch.no_grad():
        out = model[0](ids, torch.arange(ids.shape[1]).expand(ids.shape[0], -1), None)
    parallel_state.destroy_model_parallel()
    return out, model


def _train_then_export(rank, world_size, hf_dir, root, ids):
    import contextlib
    import io

    from mbridge.training import finetune
    from mbridge.training.gpt_step import forward_step
    from mbridge_peft import LoRA
    from mbridge_train.auto_bridge import AutoBridge

    AutoBridge.import_ckpt(hf_dir, f"{root}/base")
    os.rename(hf_dir, hf_dir + "-hidden")  # nothing below may read the Hugging Face folder
    results = {}
    for name, peft in (("full", None), ("lora", LoRA(dim=4, alpha=8))):
        bridge = AutoBridge.from_megatron_checkpoint(f"{root}/base")
        provider = bridge.to_megatron_provider(load_weights=False, seq_length=SEQ,
                                               use_cpu_initialization=True)
        cfg = tiny_config(train=dict(train_iters=3), checkpoint=dict(
            pretrained_checkpoint=f"{root}/base", save=f"{root}/{name}", save_interval=3))
        cfg.model, cfg.peft = provider, peft
        cfg.optimizer.lr = 1e-2
        cfg.dataset.sequence_length = SEQ
        with contextlib.redirect_stdout(io.StringIO()):
            finetune(cfg, forward_step)
        AutoBridge.export_ckpt(f"{root}/{name}", f"{root}/{name}-hf", show_progress=False)
        fresh = AutoBridge.from_megatron_checkpoint(f"{root}/{name}")
        logits, model = _logits(fresh.to_megatron_provider(load_weights=False, seq_length=SEQ,
                                                           use_cpu_initialization=True),
                                f"{root}/{name}", ids, peft)
        if peft:  # classmethod use: the adapter checkpoint alone
            AutoBridge.export_adapter_ckpt(f"{root}/{name}", f"{root}/{name}-adapter")
        results[name] = logits
    os.rename(hf_dir + "-hidden", hf_dir)
    return results


# Nemotron: its MLP's linear_fc1 is up_proj alone (not gate + up), its norms have biases.
@pytest.fixture(scope="module", params=["llama", pytest.param("nemotron", marks=pytest.mark.slow)])
def trained(tmp_path_factory, request):
    preload()
    root = tmp_path_factory.mktemp("trained")
    families, ids = make_families(root / "hf", names=[request.param], vocab=VOCAB)
    hf_dir, hf_logits = families[request.param]
    save_tiny_tokenizer(hf_dir, VOCAB)
    (results,) = run_ranks(_train_then_export, 1, hf_dir, str(root), ids)
    return root, hf_dir, hf_logits, results, ids


@pytest.mark.parametrize("name", ["full", "lora"])
def test_exported_trained_model_gives_mbridges_logits(trained, name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, _, hf_logits, results, ids = trained
    mbridge_logits = results[name]
    assert (mbridge_logits - hf_logits).abs().max() > 1e-3  # training changed the model
    model = AutoModelForCausalLM.from_pretrained(str(root / f"{name}-hf")).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, mbridge_logits, **TOL)
    AutoTokenizer.from_pretrained(str(root / f"{name}-hf"))


def test_lora_adapter_export_loads_in_peft(trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root, hf_dir, _, results, ids = trained
    base = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    model = PeftModel.from_pretrained(base, str(root / "lora-adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, results["lora"], **TOL)
