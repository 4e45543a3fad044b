"""Choosing the linears to adapt: short names (``linear_qkv``) or wildcards on full names.

A pattern without wildcard characters matches a module whose last name component equals it (or
whose full name equals it); a pattern with ``*``/``?``/``[`` is an fnmatch pattern on the full
module name, e.g. ``*.layers.0.*.linear_qkv``. A pattern that matches nothing is an error naming
the linears that do exist, so a typo never silently trains nothing.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable, Sequence

from mbridge_config.errors import MBridgeError


class TargetError(MBridgeError, ValueError):
    """target_modules / exclude_modules name no linear layer of the model."""


def _is_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def matches(pattern: str, full_name: str) -> bool:
    if _is_wildcard(pattern):
        return fnmatchcase(full_name, pattern)
    return full_name == pattern or full_name.rsplit(".", 1)[-1] == pattern


def select(names: Sequence[str], target_modules: Iterable[str] | None,
           exclude_modules: Iterable[str] | None = None, what: str = "target_modules") -> list[str]:
    """The names chosen by the targets (all of them when no target is given) minus exclusions.

    Raises TargetError when a target or exclusion pattern matches no name.
    """
    targets = list(target_modules or [])
    excludes = list(exclude_modules or [])
    chosen = [n for n in names if not targets or any(matches(t, n) for t in targets)]
    for pattern, kind in [(t, what) for t in targets] + [(e, "exclude_modules") for e in excludes]:
        if not any(matches(pattern, n) for n in names):
            raise TargetError(f"{kind}: {pattern!r} matches no linear module; available: "
                              f"{describe_names(names)}")
    return [n for n in chosen if not any(matches(e, n) for e in excludes)]


def describe_names(names: Sequence[str]) -> str:
    """Short names first (what users usually mean), then a few full names as examples."""
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    examples = ", ".join(list(names)[:3])
    return f"{', '.join(short) or 'none'} (full names like {examples})" if names else "none"
