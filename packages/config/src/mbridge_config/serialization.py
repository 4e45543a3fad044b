"""Dataclass configs <-> plain dicts <-> YAML, with the field types deciding how values load.

A dataclass becomes a mapping with ``_target_`` (its import path) plus its init fields; loading
imports the target, checks it is a dataclass of the expected type and rejects unknown keys with
the closest valid name. ``_target_`` may be left out where the field's type names one dataclass,
so hand-written YAML stays short. torch dtypes are written as "torch.bfloat16", enums by name,
functions and classes as ``{_call_: module.qualname}``, functools.partial objects with their
arguments; anything else that YAML cannot hold (a lambda, a closure) is an error naming the field.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import torch
import yaml

from mbridge_config.errors import ConfigError, did_you_mean

TARGET, CALL, PARTIAL = "_target_", "_call_", "_partial_"


# ----------------------------------------------------------------------------------- to dict


def to_dict(value: Any, path: str = "") -> Any:
    """Plain data (dicts, lists, scalars) for a config value, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {TARGET: _import_path(type(value))}
        for f in init_fields(type(value)):
            out[f.name] = to_dict(getattr(value, f.name), _join(path, f.name))
        return out
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, functools.partial):
        return {PARTIAL: _callable_path(value.func, path),
                "args": [to_dict(a, path) for a in value.args],
                "kwargs": {k: to_dict(v, path) for k, v in value.keywords.items()}}
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        return {CALL: _callable_path(value, path)}
    if isinstance(value, (list, tuple)):
        return [to_dict(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): to_dict(v, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(f"cannot serialise a {type(value).__name__} ({value!r})", field=path)


def to_yaml_text(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False)


def write_yaml(config: Any, path: str | os.PathLike) -> None:
    """Write atomically: a temp file in the same folder, renamed over the target."""
    write_text(path, to_yaml_text(config))


def write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` to ``path`` through a temp file in the same folder, renamed over the target."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_yaml(path: str | os.PathLike) -> Any:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no such YAML file: {file}")
    try:
        return yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML ({error})".replace("\n", " ")) from None


# --------------------------------------------------------------------------------- from dict


def from_dict(data: Any, expected: Any, path: str = "") -> Any:
    """Rebuild a value of type ``expected`` from plain data, coercing scalars to the field types."""
    if isinstance(data, dict) and TARGET in data:
        return _build_dataclass(data, _resolve_target(data[TARGET], expected, path), path)
    if isinstance(data, dict) and CALL in data:
        return _import_object(data[CALL], path)
    if isinstance(data, dict) and PARTIAL in data:
        func = _import_object(data[PARTIAL], path)
        return functools.partial(func, *[from_dict(a, Any, path) for a in data.get("args", [])],
                                 **{k: from_dict(v, Any, path)
                                    for k, v in data.get("kwargs", {}).items()})
    if isinstance(data, dict):
        target = _dataclass_for_keys(expected, data.keys())
        if target is not None:
            return _build_dataclass(data, target, path)
    return coerce(data, expected, path)


def init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields (Any where they cannot be resolved).

    Cached per class: resolving hints is the costly part of loading, asked once per field.
    Callers must not mutate the returned dict."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - some upstream annotations name optional packages
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def field_value(cls: type, name: str, value: Any, path: str) -> Any:
    """``value`` loaded for field ``name`` of ``cls``. Upstream configs often annotate
    ``x: int = None``; a None default makes None valid whatever the annotation says."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if value is None and f.default is None:
        return None
    return from_dict(value, field_types(cls)[name], path)


def _build_dataclass(data: dict, cls: type, path: str) -> Any:
    known = {f.name for f in init_fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key == TARGET:
            continue
        if key not in known:
            raise ConfigError(
                f"unknown key for {cls.__name__}{did_you_mean(key, known)}", field=_join(path, key)
            )
        kwargs[key] = field_value(cls, key, value, _join(path, key))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError, AssertionError) as error:
        raise ConfigError(f"{cls.__name__} rejected these values: {error}", field=path) from None


def _resolve_target(target: str, expected: Any, path: str) -> type:
    cls = _import_object(target, path)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigError(f"_target_ {target} is not a config dataclass", field=path)
    allowed = [t for t in _union_members(expected) if isinstance(t, type)]
    concrete = [t for t in allowed if not getattr(t, "_is_protocol", False)]
    if concrete and not any(issubclass(cls, t) for t in concrete) and len(concrete) == len(allowed):
        names = ", ".join(t.__name__ for t in concrete)
        raise ConfigError(f"_target_ {target} is not a {names}", field=path)
    return cls


def _dataclass_members(expected: Any) -> list[type]:
    return [t for t in _union_members(expected)
            if isinstance(t, type) and dataclasses.is_dataclass(t)]


def single_dataclass(expected: Any) -> type | None:
    candidates = _dataclass_members(expected)
    return candidates[0] if len(candidates) == 1 else None


def _dataclass_for_keys(expected: Any, keys: Any) -> type | None:
    """The dataclass of a field's type that a mapping without _target_ describes: the only one,
    or the only one of a union whose fields include all the keys."""
    candidates = _dataclass_members(expected)
    if len(candidates) == 1:
        return candidates[0]
    fitting = [c for c in candidates if set(keys) <= {f.name for f in init_fields(c)}]
    return fitting[0] if len(fitting) == 1 else None


def _union_members(annotation: Any) -> tuple:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


# ---------------------------------------------------------------------------------- coercion


def coerce(value: Any, annotation: Any, path: str) -> Any:
    """``value`` (from YAML or a command line) as the field's declared type, or a ConfigError."""
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return value
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = typing.get_args(annotation)
        if value is None:
            if type(None) in members:
                return None
            raise ConfigError(f"may not be null (expected {_type_name(annotation)})", field=path)
        errors = []
        for member in sorted(members, key=lambda m: not _matches_exactly(value, m)):
            if member is type(None):
                continue
            try:
                return coerce(value, member, path)
            except ConfigError as error:
                errors.append(error)
        if len(errors) == 1:  # X | None: X's own message says more
            raise errors[0]
        raise ConfigError(f"expected {_type_name(annotation)}, got {value!r}", field=path)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value in choices:
            return value
        raise ConfigError(f"must be one of {', '.join(map(repr, choices))}, got {value!r}",
                          field=path)
    if origin in (list, tuple, set) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {value!r}", field=path)
        args = typing.get_args(annotation)
        item = args[0] if args else Any  # list[X], tuple[X, ...]
        items = [from_dict(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", field=path)
        args = typing.get_args(annotation)
        item = args[1] if len(args) == 2 else Any
        return {k: from_dict(v, item, _join(path, str(k))) for k, v in value.items()}
    if origin is not None and origin.__module__ == "collections.abc":  # Callable[...] etc.
        return value
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"must be null, got {value!r}", field=path)
    if value is None:
        raise ConfigError(f"may not be null (expected {_type_name(annotation)})", field=path)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"expected true or false, got {value!r}", field=path)
    if annotation is int:
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
        raise ConfigError(f"expected an integer, got {value!r}", field=path)
    if annotation is float:
        number = _number(value)
        if isinstance(number, int) and not isinstance(value, str):
            return number  # an int is a valid float; keeping it keeps YAML round trips exact
        if number is not None:
            return float(number)
        raise ConfigError(f"expected a number, got {value!r}", field=path)
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"expected a string, got {value!r}", field=path)
    if annotation is torch.dtype:
        return _dtype(value, path)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if isinstance(value, annotation):
            return value
        try:
            return annotation[value] if isinstance(value, str) else annotation(value)
        except (KeyError, ValueError):
            names = ", ".join(m.name for m in annotation)
            raise ConfigError(f"expected one of {names}, got {value!r}", field=path) from None
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        raise ConfigError(f"expected a {annotation.__name__} mapping, got {value!r}", field=path)
    if isinstance(annotation, type) and not getattr(annotation, "_is_protocol", False):
        if isinstance(value, annotation):
            return value
        raise ConfigError(f"expected {annotation.__name__}, got {value!r}", field=path)
    return value


def _matches_exactly(value: Any, annotation: Any) -> bool:
    if annotation in (bool, int, float, str):
        return type(value) is annotation
    return typing.get_origin(annotation) is Literal and value in typing.get_args(annotation)


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)  # "3e-4": YAML 1.1 reads it as a string
            except ValueError:
                return None
    return None


_DTYPE_NAMES = {"bf16": torch.bfloat16, "fp16": torch.float16, "half": torch.float16,
                "fp32": torch.float32, "float": torch.float32, "fp64": torch.float64}


def _dtype(value: Any, path: str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        name = value.removeprefix("torch.")
        found = _DTYPE_NAMES.get(name, getattr(torch, name, None))
        if isinstance(found, torch.dtype):
            return found
    raise ConfigError(f"expected a torch dtype such as torch.bfloat16, got {value!r}", field=path)


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


# ----------------------------------------------------------------------------------- imports


def _import_path(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _callable_path(func: Any, path: str) -> str:
    name = _import_path(func)
    if "<" in name or _import_object(name, path, quiet=True) is not func:
        raise ConfigError(
            f"{name} cannot be written to YAML (a lambda or local function); use a "
            "module-level function", field=path)
    return name


def _import_object(dotted: str, path: str, quiet: bool = False) -> Any:
    parts = str(dotted).split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            return obj
        except AttributeError:
            break
    if quiet:
        return None
    raise ConfigError(f"cannot import {dotted}", field=path)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
