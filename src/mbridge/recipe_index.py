"""Find recipes (module-level ``*_config`` functions under ``mbridge.recipes``) without importing.

The CLI's listing must answer in well under a second, and recipe modules import torch and
megatron-core; so recipes are found by parsing the source files.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

RECIPES_ROOT = Path(__file__).resolve().parent / "recipes"


@dataclass(frozen=True)
class Recipe:
    name: str  # "llama.llama3_8b.pretrain_config"
    summary: str  # first line of the function's docstring


def find_recipes(root: Path = RECIPES_ROOT) -> list[Recipe]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name.startswith("_"):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_config") \
                    and not node.name.startswith("_"):
                doc = (ast.get_docstring(node) or "").strip().splitlines()
                found.append(Recipe(f"{module}.{node.name}", doc[0] if doc else ""))
    return found
