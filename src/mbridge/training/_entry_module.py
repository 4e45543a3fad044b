"""Bridge's ``megatron.bridge.training.pretrain`` is both a module (``...pretrain.pretrain``) and,
as ``from megatron.bridge.training import pretrain``, the function. Python sets a package's
attribute to a submodule once that submodule is imported, so a lazily exported function of the
same name would turn into the module depending on import order. The submodules here are
therefore callable: whichever one a user gets, ``pretrain(cfg, forward_step)`` runs.
"""

from __future__ import annotations

import inspect
import sys
import types


class EntryPointModule(types.ModuleType):
    """A module that calls (and reports the signature of) its own same-named function."""

    def _function(self):
        return getattr(self, self.__name__.rpartition(".")[2])

    def __call__(self, *args, **kwargs):
        return self._function()(*args, **kwargs)

    @property
    def __signature__(self):
        return inspect.signature(self._function())


def make_callable(module_name: str) -> None:
    sys.modules[module_name].__class__ = EntryPointModule
