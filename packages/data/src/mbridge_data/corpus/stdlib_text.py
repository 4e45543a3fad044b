"""English prose that ships with every Python: module/class/function docstrings of the standard
library and the language-reference topics behind ``help()`` (``pydoc_data.topics``).

No download and no extra package, so a pretraining corpus can be built on any machine. The text
depends on the Python version only; within one interpreter it is the same every time (files are
read in sorted order).
"""

from __future__ import annotations

import ast
import multiprocessing as mp
import sysconfig
from pathlib import Path

MIN_CHARS = 200
_SKIP_PARTS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py")
                  if not _SKIP_PARTS.intersection(p.relative_to(root).parts))


def docstrings_of(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= MIN_CHARS:
                found.append(doc.strip())
    return found


def reference_topics() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip it
        return []
    return [topics[k].strip() for k in sorted(topics) if len(topics[k]) >= MIN_CHARS]


def documents(workers: int = 2) -> list[str]:
    """Every document, deduplicated, in a fixed order: reference topics, then docstrings."""
    files = stdlib_files()
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            per_file = pool.map(docstrings_of, files, chunksize=16)
    else:
        per_file = [docstrings_of(f) for f in files]
    seen, out = set(), []
    for doc in reference_topics() + [d for docs in per_file for d in docs]:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out
