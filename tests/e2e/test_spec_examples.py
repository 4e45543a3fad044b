"""The spec's Megatron Bridge "After" examples, run with the import prefix `mbridge` and
scaled-down sizes and paths (tests/e2e/examples/*.py; each file says what was scaled).

Every example runs on forked CPU ranks like torchrun would start them; the assertions check
what the example promises (training happened and improved, checkpoints landed where the config
says, the configured logs were written).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_example

pytestmark = pytest.mark.multiproc


def _train_losses(history):
    return [h["lm loss"] for h in history if "split" not in h and "lm loss" in h]


def _tracker(folder) -> int:
    return int((Path(folder) / "latest_checkpointed_iteration.txt").read_text())


def test_pretraining_then_fine_tuning_migration_examples(e2e_data, tmp_path):
    pretrained = tmp_path / "pretrain"
    ranks = run_example("pretrain_migration.py", 4, E2E_DATA_PREFIX=e2e_data["prefix"],
                        E2E_CHECKPOINTS=pretrained)
    (history,) = ranks[-1]["histories"]  # the last rank holds the last pipeline stage
    losses = _train_losses(history)
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert [h["step"] for h in history if h.get("split") == "validation"] == [3, 6]
    assert _tracker(pretrained) == 6 and (pretrained / "iter_0000003").is_dir()

    tuned = tmp_path / "sft"
    (sft,) = run_example("finetune_migration.py", 1, E2E_SFT_ROOT=e2e_data["sft"],
                         E2E_PRETRAINED=pretrained, E2E_TOKENIZER_DIR=e2e_data["tokenizer"],
                         E2E_CHECKPOINTS=tuned)
    (history,) = sft["histories"]
    assert [h["step"] for h in history if "split" not in h] == [4]  # log_interval default 100
    assert {h["split"] for h in history if "split" in h} == {"validation", "test"}
    assert _tracker(tuned) == 4
    assert list(Path(e2e_data["sft"], "packed").rglob("training_64.npz"))  # packed once, kept


def test_custom_forward_step_and_loss_reduction_examples():
    (rank,) = run_example("custom_forward_step.py", 1)
    custom, reduced = rank["histories"]
    assert [len(h) for h in (custom, reduced)] == [4, 4]
    assert all("custom loss" in h for h in custom)
    assert all({"loss", "custom_metric"} <= set(h) for h in reduced)
    assert reduced[-1]["loss"] < reduced[0]["loss"]
    assert all(0.0 <= h["custom_metric"] <= 1.0 for h in reduced)  # accuracy: value / count


def _tiny_hf_llama(directory, vocab: int):
    """A random Hugging Face Llama with Llama 3 8B's features (RoPE base 500000, untied)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, rope_theta=500000.0,
                         tie_word_embeddings=False, rms_norm_eps=1e-5)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def test_entry_point_examples_fine_tune_from_a_converted_hugging_face_model(e2e_data, tmp_path):
    from mbridge_data.tokenizers.huggingface import HuggingFaceTokenizer

    vocab = HuggingFaceTokenizer(e2e_data["tokenizer"]).vocab_size
    hf = _tiny_hf_llama(tmp_path / "hf", vocab)
    (rank,) = run_example("entry_points.py", 1, E2E_HF_MODEL=hf, E2E_OUT=tmp_path,
                          E2E_VOCAB=vocab, E2E_SFT_ROOT=e2e_data["sft"],
                          E2E_TOKENIZER_DIR=e2e_data["tokenizer"])
    assert _tracker(tmp_path / "megatron_checkpoint") == 0
    sft, peft = rank["histories"]
    for history, folder in ((sft, "sft_checkpoints"), (peft, "peft_checkpoints")):
        # LoggerConfig's default log_interval (100) logs the last step only.
        assert [h["step"] for h in history if "split" not in h] == [3]
        assert [h["step"] for h in history if h.get("split") == "validation"] == [2]
        assert _tracker(tmp_path / folder) == 3


def test_recipe_examples(e2e_data, tmp_path):
    ranks = run_example("recipes.py", 4, E2E_OUT=tmp_path / "runs",
                        E2E_CUSTOM_CHECKPOINTS=tmp_path / "custom",
                        E2E_DATA_PREFIX=e2e_data["prefix"])
    prebuilt, custom = ranks[-1]["histories"]
    assert [h["step"] for h in prebuilt if "split" not in h] == [4]  # the recipe logs every 10
    assert [h["step"] for h in prebuilt if h.get("split") == "validation"] == [2, 4]
    assert _tracker(tmp_path / "runs" / "llama3_8b" / "checkpoints") == 4  # the recipe's name
    assert [h["step"] for h in custom if "split" not in h] == [4]
    assert _tracker(tmp_path / "custom") == 4 and (tmp_path / "custom" / "iter_0000002").is_dir()


def test_callback_examples():
    ranks = run_example("callbacks.py", 2)
    for rank in ranks:
        assert rank["result"]["moe"] == (1.0, True)
        refusals = rank["result"]["refusals"]
        assert "comm_overlap.tp_comm_overlap" in refusals["tp_comm_overlap"]
        assert "DeepEP" in refusals["deepep"] or "deep_ep" in refusals["deepep"]
    (history,) = ranks[-1]["histories"]  # the refused runs never started training
    assert len(_train_losses(history)) == 4
    assert [h["step"] for h in history if h.get("split") == "validation"] == [2, 4]


def test_configuration_migration_examples(e2e_data, tmp_path):
    (rank,) = run_example("configuration.py", 1, E2E_OUT=tmp_path,
                          E2E_DATA_PREFIX=e2e_data["prefix"], E2E_SFT_ROOT=e2e_data["sft"],
                          E2E_TOKENIZER_DIR=e2e_data["tokenizer"])
    import torch

    result = rank["result"]
    assert result["validated"]["preset_precision"] == (True, torch.bfloat16)
    assert result["validated"]["detailed_precision"] == (True, torch.bfloat16)
    assert result["async_save"]  # the spec's async saves, finished before the run returned
    (history,) = rank["histories"]
    assert [h["step"] for h in history if "split" not in h] == list(range(1, 7))
    assert _tracker(tmp_path / "checkpoints") == 6
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("iter_*")) == [
        "iter_0000003", "iter_0000006"]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert list((tmp_path / "tensorboard").glob("*.pt.trace.json"))  # the profiler window
    assert list((tmp_path / "wandb").rglob("run-*.wandb"))  # offline W&B run
