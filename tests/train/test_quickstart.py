"""The README's main job end to end on the CPU: the LoRA fine-tune must answer better than the
pretrained model it starts from (minutes: marked slow)."""

from __future__ import annotations

import json

import pytest
from multirank import run_ranks

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]


def _quickstart(rank, world_size, work):
    from mbridge_train.quickstart import run_quickstart

    result = run_quickstart(work, say=lambda *_: None)
    return result.accuracy_before, result.accuracy_after


def test_quickstart_fine_tune_improves_exact_match_accuracy(tmp_path):
    ((before, after),) = run_ranks(_quickstart, 1, str(tmp_path), timeout=1800)
    assert before["all"] < after["all"]
    assert after["count"] > 0  # what LoRA learns first (CPU: 85-90%; H200 runs: 15-90%)
    saved = json.loads((tmp_path / "quickstart.json").read_text())
    assert saved["accuracy_after"] == after
    assert (tmp_path / "quickstart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "runs" / "finetune" / "checkpoints" /
            "latest_checkpointed_iteration.txt").read_text().strip() == "1200"
