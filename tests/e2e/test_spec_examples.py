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
    assert len(_train_losses(history)) == 4
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
