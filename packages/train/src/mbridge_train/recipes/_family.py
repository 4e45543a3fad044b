"""Family packages load their model modules on first attribute use (``recipes.llama.llama3_8b``)
and answer the newer Megatron Bridge names too: ``llama.llama3_8b_pretrain_config`` is
``llama.llama3_8b.pretrain_config``. This module imports nothing heavy."""

from __future__ import annotations

import importlib
from pathlib import Path

KINDS = ("pretrain_config", "finetune_config")


def family_attributes(package: str, path: list[str]):
    """(__getattr__, __dir__) for a family package ``package`` whose folder is ``path[0]``."""
    folder = Path(path[0])

    def models() -> list[str]:
        return sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))

    def __getattr__(name: str):
        if not name.startswith("_") and (folder / f"{name}.py").is_file():
            return importlib.import_module(f"{package}.{name}")  # a model module, on first use
        for kind in KINDS:
            model = name.removesuffix("_" + kind)
            if model != name and (folder / f"{model}.py").is_file():
                return getattr(importlib.import_module(f"{package}.{model}"), kind)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*models(), *(f"{m}_{k}" for m in models() for k in KINDS)])

    return __getattr__, __dir__
