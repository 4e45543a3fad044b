"""Hydra-style dotted overrides: ``train.train_iters=100 optimizer.lr=3e-4 profiling=null``.

* ``a.b.c=VALUE`` sets a field; VALUE is read as YAML (``[1, 2]``, ``null``, ``true``, ``{k: v}``)
  and then coerced to the field's declared type, so ``optimizer.lr=3e-4`` is a float and
  ``model.params_dtype=bf16`` a torch dtype.
* ``~a.b.c`` resets a field to its default.
* Setting a field inside a sub-config that is None (``profiling.use_pytorch_profiler=true``)
  first creates that sub-config with its defaults, when its type names one dataclass.
Unknown keys fail with the closest valid name; nothing is changed unless every override applies.
Code passes a mapping instead (``{"model.recompute_granularity": "full"}``): the values are
already Python objects and are coerced the same way.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from mbridge_config.errors import ConfigError, did_you_mean
from mbridge_config.serialization import single_dataclass, field_types, field_value, init_fields


def parse_override(text: str) -> tuple[str, Any, bool]:
    """'a.b=1' -> ('a.b', 1, False); '~a.b' -> ('a.b', None, True)."""
    text = text.strip()
    if text.startswith("~"):
        return text[1:], None, True
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{text}' is not of the form key=value or ~key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # e.g. an unquoted string with a colon: keep it as written
    return key.strip(), value, False


def apply_overrides(config: Any, overrides: Iterable[str] | Mapping[str, Any]) -> Any:
    """Apply overrides to ``config`` in place (all or nothing) and return it: ``key=value`` /
    ``~key`` texts, or a mapping of dotted keys to values."""
    staged = copy.deepcopy(config)
    parsed = ((key, copy.deepcopy(value), False) for key, value in overrides.items()) \
        if isinstance(overrides, Mapping) else map(parse_override, overrides)
    for key, value, reset in parsed:
        _apply(staged, key, value, reset)
    for f in dataclasses.fields(config):
        setattr(config, f.name, getattr(staged, f.name))
    return config


def _apply(root: Any, key: str, value: Any, reset: bool) -> None:
    parts = key.split(".")
    node, walked = root, []
    for part in parts[:-1]:
        _field(node, part, walked)
        walked.append(part)
        current = getattr(node, part)
        if current is None:
            cls = single_dataclass(field_types(type(node))[part])
            if cls is None:
                raise ConfigError("is null and has no single config type to create",
                                  field=".".join(walked))
            current = cls()
            setattr(node, part, current)
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"is a {type(current).__name__}, not a config with fields",
                              field=".".join(walked))
        node = current
    name = parts[-1]
    f = _field(node, name, walked)
    path = ".".join(parts)
    if reset:
        new = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if new is dataclasses.MISSING:
            raise ConfigError("has no default to reset to", field=path)
    else:
        new = field_value(type(node), name, value, path)
    setattr(node, name, new)


def _field(node: Any, name: str, walked: list[str]) -> dataclasses.Field:
    fields = {f.name: f for f in init_fields(type(node))}
    if name not in fields:
        where = ".".join(walked) or type(node).__name__
        raise ConfigError(f"unknown key in {where}{did_you_mean(name, fields)}",
                          field=".".join([*walked, name]))
    return fields[name]
