"""Pretraining data fields of a recipe from the ways users name their data.

``data_paths`` (one blend split by ``split``), ``train/valid/test_data_path`` (one list per
split), a text file of paths (``data_args_path``) or a JSON file of per-split lists
(``per_split_data_args_path``). Lists may interleave weights with paths as NeMo 2.0 wrote them
(``["30", "a_text_document", "70", "b_text_document"]``); they become ``blend`` +
``blend_weights``, which mbridge keeps apart as Megatron Bridge does. No paths (or ``mock``)
means megatron-core's mock data.
"""

from __future__ import annotations

import json
from pathlib import Path

from mbridge_config.errors import ConfigError

REAL_DATA_SPLIT = "9999,8,2"
MOCK_SPLIT = "949,50,1"


def split_weights(entries, field: str) -> tuple[list[str], list[float] | None]:
    """(paths, weights or None) from ``[path, ...]`` or ``[weight, path, weight, path, ...]``."""
    entries = [str(e) for e in entries]
    if not entries:
        raise ConfigError("is an empty list of dataset path prefixes", field=field)
    if len(entries) % 2 == 0 and all(_is_number(e) for e in entries[::2]) and \
            not any(_is_number(e) for e in entries[1::2]):
        return entries[1::2], [float(w) for w in entries[::2]]
    return entries, None


def blend_fields(data_paths=None, data_args_path=None, train_data_path=None,
                 valid_data_path=None, test_data_path=None, per_split_data_args_path=None,
                 mock: bool = False) -> dict:
    """GPTDatasetConfig keyword arguments (blend, blend_weights, blend_per_split,
    blend_weights_per_split, split) for the given data arguments; at most one way may be used."""
    single = {"data_paths": data_paths, "data_args_path": data_args_path}
    per_split = {"train_data_path": train_data_path, "valid_data_path": valid_data_path,
                 "test_data_path": test_data_path,
                 "per_split_data_args_path": per_split_data_args_path}
    given = [k for k, v in {**single, **per_split}.items() if v]
    fields = dict(blend=None, blend_weights=None, blend_per_split=None,
                  blend_weights_per_split=None, split=MOCK_SPLIT)
    if mock or not given:
        return fields
    split_lists = [k for k in given if k.endswith("_data_path")]
    if len(given) > 1 and len(split_lists) != len(given):  # only per-split lists combine
        raise ConfigError(f"give one way of naming the data, got {', '.join(given)}",
                          field=given[-1])
    if data_paths:
        fields["blend"], fields["blend_weights"] = split_weights(data_paths, "data_paths")
    elif data_args_path:
        text = _read(data_args_path, "data_args_path")
        fields["blend"], fields["blend_weights"] = split_weights(text.split(), "data_args_path")
    else:
        lists = [train_data_path, valid_data_path, test_data_path]
        if per_split_data_args_path:
            data = _load_json(per_split_data_args_path)
            lists = [data.get(key) for key in ("train", "valid", "test")]
        pairs = [split_weights(x, f"{name}_data_path") if x else (None, None)
                 for name, x in zip(("train", "valid", "test"), lists)]
        fields["blend_per_split"] = [p for p, _ in pairs]
        weights = [w for _, w in pairs]
        fields["blend_weights_per_split"] = weights if any(w is not None for w in weights) else None
        fields["split"] = None
        return fields
    fields["split"] = REAL_DATA_SPLIT
    return fields


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read(path, field: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no such file: {file}", field=field)
    return file.read_text()


def _load_json(path) -> dict:
    text = _read(path, "per_split_data_args_path")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error})",
                          field="per_split_data_args_path") from None
    if not isinstance(data, dict) or not set(data) <= {"train", "valid", "test"}:
        raise ConfigError(f"{path}: expected an object with train / valid / test lists",
                          field="per_split_data_args_path")
    return data
