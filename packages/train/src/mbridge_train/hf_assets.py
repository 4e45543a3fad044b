"""The Hugging Face files a checkpoint keeps so it can be exported with nothing else.

    <save>/iter_0000010/hf_assets/config.json              the HF architecture config
    <save>/iter_0000010/hf_assets/generation_config.json   when the source had one
    <save>/iter_0000010/hf_assets/tokenizer*.json, ...     the tokenizer files
    <save>/iter_0000010/hf_assets/mbridge.json             where the base weights of an
                                                           adapter-only (PEFT) save live

``import_ckpt`` copies them from the Hugging Face folder; every training save carries them on
from its ``pretrained_checkpoint`` (or the checkpoint it resumed), from ``model.hf_model_id``
when that is a local folder, or writes a config.json translated from the provider. The folder is
written under a temp name and renamed, before the save's tracker names the iteration.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

ASSETS = "hf_assets"
INFO = "mbridge.json"
CONFIG = "config.json"
FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
         "added_tokens.json", "chat_template.jinja", "chat_template.json", "vocab.txt")


def asset_files(folder: str | os.PathLike) -> list[Path]:
    """The Hugging Face config / tokenizer files present in ``folder``."""
    folder = Path(folder)
    found = [folder / name for name in FILES if (folder / name).is_file()]
    return found + sorted(p for p in folder.glob("*.tiktoken") if p.is_file())


def write_assets(directory: str | os.PathLike, source: str | os.PathLike | None = None,
                 config: dict | None = None, info: dict | None = None) -> Path:
    """``directory``/hf_assets from the files of ``source`` (a HF folder or another
    hf_assets folder); ``config`` replaces / provides config.json."""
    target = Path(directory) / ASSETS
    tmp = Path(tempfile.mkdtemp(prefix=f".{ASSETS}.tmp-", dir=directory))
    try:
        if source is not None:
            for file in asset_files(source):
                shutil.copy2(file, tmp / file.name)
        if config is not None:
            (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if info is not None:
            (tmp / INFO).write_text(json.dumps(info, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def assets_of(directory: str | os.PathLike) -> Path | None:
    """The hf_assets folder of an iteration folder, when it has one with a config.json."""
    folder = Path(directory) / ASSETS
    return folder if (folder / CONFIG).is_file() else None


def _checkpoint_assets(path: str | None) -> Path | None:
    if not path:
        return None
    from mbridge_train.checkpointing import CheckpointError, find_checkpoint, read_tracker

    try:
        directory = find_checkpoint(path) if read_tracker(path) is not None else path
    except CheckpointError:
        return None
    return assets_of(directory)


def source_for(cfg) -> tuple[Path | None, dict | None]:
    """Where a training save takes its HF files from: (folder to copy, config.json to write)."""
    ckpt = cfg.checkpoint
    for path in (ckpt.pretrained_checkpoint, ckpt.load):
        found = _checkpoint_assets(path)
        if found is not None:
            return found, None
    model_id = getattr(cfg.model, "hf_model_id", None)
    if model_id and (Path(model_id) / CONFIG).is_file():
        return Path(model_id), None
    tokenizer = getattr(getattr(cfg, "tokenizer", None), "tokenizer_model", None)
    folder = Path(tokenizer) if tokenizer and Path(str(tokenizer)).is_dir() else None
    return folder, translated_config(cfg.model)


def translated_config(provider) -> dict | None:
    """config.json for a provider of a family the registry knows; None for other models."""
    from mbridge_models.conversion.errors import ConversionError
    from mbridge_models.conversion.llama import architecture_of
    from mbridge_models.gpt_provider import GPTModelProvider

    if not isinstance(provider, GPTModelProvider) or provider.multi_latent_attention:
        return None
    try:
        return architecture_of(provider).hf_config(provider)
    except ConversionError:
        return None


def save_with_checkpoint(cfg, directory: str) -> Path | None:
    """hf_assets for a training save of ``cfg`` into ``directory`` (rank 0); None when no
    Hugging Face architecture describes the model."""
    source, config = source_for(cfg)
    if config is None and (source is None or not (Path(source) / CONFIG).is_file()):
        return None
    info = None
    if cfg.peft is not None:
        base = cfg.checkpoint.pretrained_checkpoint
        info = {"adapters_only": True,
                "pretrained_checkpoint": os.path.abspath(base) if base else None}
    return write_assets(directory, source, config, info)
