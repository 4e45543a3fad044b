"""Helper processes end with the training process (the async-save results Manager; a writer
whose parent is already gone), and the Manager comes up fast: its initializer's module imports
nothing heavy (a spawned helper imports that module)."""

import os
import subprocess
import sys
import time

import pytest

_KILLED_PARENT = """
import multiprocessing, os, signal
from multiprocessing.managers import SyncManager
from mbridge_train.die_with_parent import die_with_parent

if __name__ == "__main__":
    manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
    manager.start(initializer=die_with_parent)
    print(manager._process.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_importing_the_initializer_loads_no_torch():
    code = "import sys, mbridge_train.die_with_parent; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_manager_ends_when_its_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"  # spawn re-imports the main module: it must be a file
    script.write_text(_KILLED_PARENT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -9, done.stderr[-2000:]
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 20
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"the manager {pid} outlived its killed parent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for init to reap it has ended too
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_a_helper_whose_parent_is_already_gone_ends_at_once():
    # the pid it was started by is not its parent any more: the parent died before the
    # signal was armed (here: a pid that was never its parent)
    code = ("import os; from mbridge_train.die_with_parent import die_with_parent; "
            "die_with_parent(parent=os.getppid() + 1); print('went on')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1 and "went on" not in done.stdout
