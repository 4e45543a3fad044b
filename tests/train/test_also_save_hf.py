"""checkpoint.also_save_hf_checkpoint: each saved iteration gets ``iter_N/hf/``, written through
the streaming export by a TP=2 run (collective), and its logits in transformers equal mbridge's
logits of the same checkpoint (fp32 CPU, atol 1e-4)."""

from __future__ import annotations

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
VOCAB = 320  # >= the NullTokenizer's 300 of the tiny training config


def _train_with_hf_saves(rank, world_size, hf_dir, root, ids):
    import contextlib
    import io

    from megatron.core import parallel_state

    from mbridge.training import finetune
    from mbridge.training.gpt_step import forward_step
    from mbridge_train.auto_bridge import AutoBridge
    from mbridge_train.checkpointing import load_pretrained_weights

    bridge = AutoBridge.from_megatron_checkpoint(f"{root}/base")
    provider = bridge.to_megatron_provider(load_weights=False, seq_length=SEQ,
                                           use_cpu_initialization=True,
                                           tensor_model_parallel_size=world_size)
    cfg = tiny_config(train=dict(train_iters=4), checkpoint=dict(
        pretrained_checkpoint=f"{root}/base", save=f"{root}/run", save_interval=2,
        also_save_hf_checkpoint=True))
    cfg.model = provider
    cfg.optimizer.lr = 1e-2
    cfg.dataset.sequence_length = SEQ
    with contextlib.redirect_stdout(io.StringIO()):
        finetune(cfg, forward_step)
    parallel_state.destroy_model_parallel()
    provider.initialize_model_parallel(seed=7)
    model = [provider.provide()]
    load_pretrained_weights(f"{root}/run", model)  # the last saved iteration (4)
    with torch.no_grad():
        logits = model[0](ids, torch.arange(ids.shape[1]).expand(ids.shape[0], -1), None)
    parallel_state.destroy_model_parallel()
    full = [torch.empty_like(logits) for _ in range(world_size)]
    torch.distributed.all_gather(full, logits.contiguous())
    return torch.cat(full, dim=-1)[..., :VOCAB] if rank == 0 else None


def _import(rank, world_size, hf_dir, root):
    from mbridge_train.auto_bridge import AutoBridge

    AutoBridge.import_ckpt(hf_dir, f"{root}/base")


def test_each_saved_iteration_has_a_hugging_face_folder_with_mbridges_logits(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    preload()
    families, ids = make_families(tmp_path / "hf", names=["llama"], vocab=VOCAB)
    hf_dir, hf_logits = families["llama"]
    save_tiny_tokenizer(hf_dir, VOCAB)
    run_ranks(_import, 1, hf_dir, str(tmp_path))
    mbridge_logits, _ = run_ranks(_train_with_hf_saves, 2, hf_dir, str(tmp_path), ids)
    for step in (2, 4):
        assert (tmp_path / "run" / f"iter_{step:07d}" / "hf" / "config.json").is_file()
    out = tmp_path / "run" / "iter_0000004" / "hf"
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    with torch.no_grad():
        exported = model(ids).logits
    assert (exported - hf_logits).abs().max() > 1e-3  # training changed the model
    torch.testing.assert_close(exported, mbridge_logits, atol=1e-4, rtol=1e-4)
    AutoTokenizer.from_pretrained(str(out))


def test_default_is_off():
    from mbridge_config import CheckpointConfig

    assert CheckpointConfig().also_save_hf_checkpoint is False
