"""`megatron.bridge.recipes`: ``mbridge.recipes.llama.llama3_8b.pretrain_config()``, ...

The recipes live in mbridge-train (``mbridge_train.recipes``). Every module below this package is
that package's module under a second name: importing ``mbridge.recipes.<a>.<b>`` imports
``mbridge_train.recipes.<a>.<b>`` and binds the very same module object (a small import hook
below), so there is one copy of each recipe, ``is`` holds between the two paths, and a recipe
added in mbridge-train needs nothing here. ``mbridge recipes`` lists them by reading the source
files, so the listing never imports torch or megatron-core.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

ALIAS = __name__  # "mbridge.recipes"
TARGET = "mbridge_train.recipes"


class _AliasLoader(importlib.abc.Loader):
    """Hands out the target module itself instead of creating a new one."""

    def __init__(self, target: str):
        self.target = target
        self.real_spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        # The import system has just stamped the alias spec on the shared module; give it its
        # own back, so that reloading and pickling by reference still name mbridge_train.
        module.__spec__ = self.real_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Finds ``mbridge.recipes.X`` as ``mbridge_train.recipes.X`` (when that exists)."""

    def find_spec(self, fullname: str, path=None, target=None):
        if not fullname.startswith(ALIAS + "."):
            return None
        real = TARGET + fullname[len(ALIAS):]
        try:
            real_spec = importlib.util.find_spec(real)
        except ModuleNotFoundError:
            return None
        if real_spec is None:
            return None
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(real), is_package=real_spec.submodule_search_locations
            is not None)


def _install() -> None:
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())


_install()


def __getattr__(name: str):
    """``mbridge.recipes.llama`` without an import statement for it."""
    if name.startswith("__"):
        raise AttributeError(f"module {ALIAS!r} has no attribute {name!r}")
    try:
        return importlib.import_module(f"{ALIAS}.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {ALIAS!r} has no attribute {name!r}") from None
