"""``pretrain`` / ``finetune`` are the functions whatever was imported first (issue 17: the lazy
export was shadowed by its same-named submodule depending on import order)."""

import subprocess
import sys

# One fresh interpreter, the worst order first: the Bridge module paths are imported before
# the package attribute is asked for, and every mbridge_train submodule before its export.
SCRIPT = """
import importlib, inspect, pkgutil

def check(where, *entries):
    for entry in entries:
        assert callable(entry), (where, entry)
        assert list(inspect.signature(entry).parameters) == ["cfg", "forward_step_func"], where

import mbridge.training.pretrain, mbridge.training.finetune
from mbridge.training import pretrain, finetune
check("mbridge.training after its submodules", pretrain, finetune)
from mbridge.training.pretrain import pretrain
from mbridge.training.finetune import finetune
check("the Bridge module paths", pretrain, finetune)

import mbridge_train
for module in pkgutil.iter_modules(mbridge_train.__path__):
    importlib.import_module("mbridge_train." + module.name)
from mbridge_train import pretrain, finetune
check("mbridge_train after every submodule", pretrain, finetune)
assert inspect.isfunction(pretrain) and inspect.isfunction(finetune)
print("ok")
"""


def test_entry_points_are_callable_in_every_import_order():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=600)
    assert done.stdout.strip().endswith("ok"), done.stderr[-2000:]
