"""An error mbridge raises on purpose ends a script in one line, also under torchrun; any other
exception keeps its traceback."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from mbridge_config.errors import ConfigError, MBridgeError
from mbridge_data.errors import DataError
from mbridge_models.conversion.errors import ConversionError
from mbridge_peft.lora import PEFTConfigError
from mbridge_peft.matching import TargetError
from mbridge_train.checkpointing import CheckpointError
from mbridge_train.user_errors import USER_ERRORS, one_line

# A resume from a folder whose tracker names an iteration that is not there: a CheckpointError
# raised deep inside set-up, after the model is built (or, with BUG=1, a bug in the step).
SCRIPT = textwrap.dedent("""
    import os, sys
    from mbridge.recipes.tiny.gpt_tiny import pretrain_config
    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step

    root = sys.argv[1]
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "latest_checkpointed_iteration.txt"), "w") as f:
        f.write("7")
    cfg = pretrain_config(train_iters=8)
    if os.environ.get("BUG"):
        def forward_step(state, data_iterator, model):
            raise KeyError("a bug in the user's step")
    else:
        cfg.checkpoint.load = root
    pretrain(cfg, forward_step)
""")


@pytest.mark.parametrize("kind", [ConfigError, DataError, CheckpointError, ConversionError,
                                  TargetError, PEFTConfigError])
def test_every_package_error_is_one_the_entry_points_render(kind):
    assert issubclass(kind, USER_ERRORS)
    assert kind is DataError or issubclass(kind, MBridgeError)


def test_one_line_joins_the_message_and_names_the_type(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    error = ConfigError([("train.train_iters", "must be > 0"), ("model.seq_length", "too long")])
    assert one_line(error) == ("mbridge: ConfigError: train.train_iters: must be > 0; "
                               "model.seq_length: too long")


def _run(argv, tmp_path, **env):
    environ = {**os.environ, "PYTHONWARNINGS": "ignore", **env}
    environ.pop("MBRIDGE_TRACEBACK", None)
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    return subprocess.run([*argv, str(script), str(tmp_path / "ckpt")], capture_output=True,
                          text=True, timeout=300, env=environ, cwd=tmp_path)


@pytest.mark.multiproc
def test_a_checkpoint_error_ends_a_script_in_one_line(tmp_path):
    done = _run([sys.executable], tmp_path)
    assert done.returncode == 1
    ours = [line for line in done.stderr.splitlines() if "CheckpointError" in line]
    # torch.distributed prefixes its rank once the process group is up (world size 1 here).
    assert len(ours) == 1 and ours[0].removeprefix("[rank0]: ").startswith(
        "mbridge: CheckpointError: ")
    assert "iter_0000007" in ours[0] and "Traceback" not in done.stderr


@pytest.mark.multiproc
def test_a_bug_keeps_its_traceback(tmp_path):
    done = _run([sys.executable], tmp_path, BUG="1")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "KeyError: \"a bug in the user's step\"" in done.stderr


@pytest.mark.slow
@pytest.mark.multiproc
def test_under_torchrun_each_rank_says_it_once_with_its_rank(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                 f"--master_port={port}"], tmp_path)
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if "mbridge: CheckpointError" in line]
    assert sorted(line.split(":")[0] for line in ours) == ["[rank0]", "[rank1]"], done.stderr
    assert "mbridge_train" not in done.stderr  # no frame of ours in any traceback
