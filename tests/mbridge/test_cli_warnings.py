"""What a user sees of dependency warnings when running `mbridge pretrain`: none of those that
never apply (mbridge_config.quiet), mbridge's own deprecation once, also under torchrun."""

import os
import socket
import subprocess
import sys

import pytest

from mbridge_config import quiet

pytestmark = pytest.mark.multiproc

DEPRECATED = "transformer_layer_spec='mcore_local' is deprecated"
# The tiny run with a deprecated spelling of a field and a checkpoint saved at the end.
ARGS = ["pretrain", "tiny.gpt_tiny", "train.train_iters=3", "scheduler.lr_warmup_iters=1",
        "train.eval_interval=null", "train.eval_iters=1", "model.transformer_layer_spec=mcore_local"]
NEVER_SHOWN = ([message.replace("\\", "") for _, message, _ in quiet.WARNINGS] +
               [start for starts in quiet.LOG_RECORDS.values() for start in starts])


def _run(prefix, tmp_path, timeout):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONWARNINGS", quiet.ALL_RANKS_VARIABLE)}
    done = subprocess.run([*prefix, "-m", "mbridge.cli", *ARGS, "-a", f"dir={tmp_path}/run"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "saved checkpoint" in done.stdout  # the save path megatron warns on ran
    return done.stdout + done.stderr


def _assert_quiet(output):
    shown = [message for message in NEVER_SHOWN if message[:40] in output]
    assert not shown, shown
    assert output.count(DEPRECATED) == 1, output[-3000:]


def test_pretrain_shows_no_inapplicable_dependency_warning_and_ours_once(tmp_path):
    _assert_quiet(_run([sys.executable], tmp_path, 600))


@pytest.mark.slow
def test_under_torchrun_a_warning_is_shown_once_not_per_rank(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _assert_quiet(_run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                        f"--master_port={port}"], tmp_path, 900))
