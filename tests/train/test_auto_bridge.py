"""AutoBridge: a Hugging Face folder becomes a Megatron checkpoint that reproduces its logits."""

from __future__ import annotations

import pytest
import torch
from multirank import run_ranks

pytestmark = pytest.mark.multiproc


def _hf_llama(directory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=32, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(directory)
    return model


def _convert_then_load(rank, world_size, hf_dir, out, ids):
    from mbridge_train.auto_bridge import AutoBridge
    from mbridge_train.checkpointing import load_pretrained_weights

    folder = AutoBridge.import_ckpt(hf_dir, out)
    bridge = AutoBridge.from_hf_pretrained(hf_dir)
    provider = bridge.to_megatron_provider(use_cpu_initialization=True, seq_length=ids.shape[1])
    provider.initialize_model_parallel(seed=123)  # a different init than the converter's
    model = provider.provide()
    load_pretrained_weights(out, [model])
    with torch.no_grad():
        logits = model(ids)
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    return folder, logits


def test_imported_checkpoint_reproduces_the_hugging_face_logits(tmp_path):
    hf = _hf_llama(tmp_path / "hf")
    ids = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
    ((folder, logits),) = run_ranks(_convert_then_load, 1, str(tmp_path / "hf"),
                                    str(tmp_path / "megatron"), ids)
    assert folder.endswith("iter_0000000")
    assert (tmp_path / "megatron" / "latest_checkpointed_iteration.txt").read_text().strip() == "0"
    torch.testing.assert_close(logits[..., :128], expected, rtol=1e-4, atol=1e-4)  # fp32


def test_a_folder_without_config_is_named(tmp_path):
    from mbridge_train.auto_bridge import AutoBridge
    from mbridge_train.checkpointing import CheckpointError

    with pytest.raises(CheckpointError, match="config.json: not found; AutoBridge reads local"):
        AutoBridge.import_ckpt(tmp_path, tmp_path / "out")
