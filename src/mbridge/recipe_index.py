"""Find recipes (module-level ``*_config`` functions under ``mbridge.recipes``) without importing.

The CLI's listing must answer in well under a second, and recipe modules import torch and
megatron-core; so recipes are found by parsing the source files. They live in mbridge-train
(``mbridge_train/recipes``, aliased as ``mbridge.recipes``); its folder is located with
``importlib.util.find_spec``, which reads no module code. Files or folders starting with ``_``
and the ``utils`` helpers are not recipes.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

NOT_RECIPES = {"utils", "run_plugins"}


def recipes_root() -> Path:
    """The folder of ``mbridge_train.recipes`` (mbridge_train's __init__ is not executed)."""
    spec = importlib.util.find_spec("mbridge_train")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("mbridge-train is not installed: it holds the recipes")
    return Path(list(spec.submodule_search_locations)[0]) / "recipes"


@dataclass(frozen=True)
class Recipe:
    name: str  # "llama.llama3_8b.pretrain_config"
    summary: str  # first paragraph of the function's docstring, on one line

    @property
    def module(self) -> str:  # "llama.llama3_8b"
        return self.name.rpartition(".")[0]

    @property
    def function(self) -> str:  # "pretrain_config"
        return self.name.rpartition(".")[2]


def find_recipes(root: Path | None = None) -> list[Recipe]:
    root = recipes_root() if root is None else root
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if any(p.startswith("_") for p in parts) or parts[0] in NOT_RECIPES:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_config") \
                    and not node.name.startswith("_"):
                doc = (ast.get_docstring(node) or "").strip().split("\n\n")[0]
                found.append(Recipe(f"{'.'.join(parts)}.{node.name}", " ".join(doc.split())))
    return found


class UnknownRecipe(LookupError):
    """No recipe of that name; the message lists the closest names."""


def resolve(name: str, kind: str, recipes: list[Recipe] | None = None) -> Recipe:
    """The recipe ``name`` names: ``llama.llama3_8b`` (its ``<kind>_config``) or
    ``llama.llama3_8b.pretrain_config``; a leading ``mbridge.recipes.`` is allowed."""
    recipes = find_recipes() if recipes is None else recipes
    for prefix in ("mbridge.recipes.", "mbridge_train.recipes."):
        name = name.removeprefix(prefix)
    by_name = {r.name: r for r in recipes}
    for candidate in (name, f"{name}.{kind}_config"):
        if candidate in by_name:
            return by_name[candidate]
    modules = sorted({r.module for r in recipes if r.function == f"{kind}_config"})
    if name in {r.module for r in recipes}:
        raise UnknownRecipe(f"{name} has no {kind}_config (it has "
                            f"{', '.join(r.function for r in recipes if r.module == name)})")
    close = difflib.get_close_matches(name, modules + list(by_name), n=4, cutoff=0.4)
    if not close:  # a model name without its family ("llama3_8b")
        close = [m for m in modules if m.rpartition(".")[2].startswith(name.rpartition(".")[2])]
    hint = f"; closest: {', '.join(close[:4])}" if close else ""
    raise UnknownRecipe(f"unknown recipe {name!r}{hint} (`mbridge recipes` lists them all)")
