"""AutoBridge: Hugging Face <-> Megatron in both directions, with Megatron Bridge's names.

    bridge = AutoBridge.from_hf_pretrained("/models/Llama-3.2-1B")
    provider = bridge.to_megatron_provider(load_weights=True)   # weights load in provide()
    model = bridge.to_megatron_model(wrap_with_ddp=False)       # chunks of this rank's layout
    bridge.save_hf_pretrained(model, "/out/hf")                 # config + tokenizer + weights
    AutoBridge.import_ckpt("/models/Llama-3.2-1B", "/ckpt")      # a Megatron checkpoint
    AutoBridge.export_ckpt("/ckpt", "/out/hf")                  # the checkpoint alone suffices

The architectures and their tensor mappings are mbridge_models.conversion's registry. Only
local folders are read: nothing is downloaded. Checkpoints keep their Hugging Face config and
tokenizer files (mbridge_train.hf_assets), so an export needs no original folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from mbridge_models.conversion.errors import ConversionError


class _either:
    """A method callable on the class (``AutoBridge.export_ckpt(ckpt, out)``: the bridge comes
    from the checkpoint) and on an instance (``bridge.export_ckpt(ckpt, out)``)."""

    def __init__(self, function):
        self.function = function
        self.__doc__ = function.__doc__

    def __get__(self, obj, cls):
        return lambda *args, **kwargs: self.function(obj, cls, *args, **kwargs)


class AutoBridge:
    """One Hugging Face architecture config (and, when known, the folder of its weights)."""

    def __init__(self, hf_config: dict, hf_path: str | os.PathLike | None = None,
                 assets_path: str | os.PathLike | None = None, torch_dtype=None):
        from mbridge_models.conversion import get_architecture

        self.hf_config = dict(hf_config)
        self.architecture = get_architecture(self.hf_config)
        self.hf_path = Path(hf_path) if hf_path is not None else None
        self.assets_path = Path(assets_path) if assets_path is not None else self.hf_path
        self.torch_dtype = _dtype(torch_dtype) if torch_dtype is not None else None
        self._provider = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_hf_pretrained(cls, path: str | os.PathLike, torch_dtype=None,
                           **kwargs: Any) -> "AutoBridge":
        """A bridge for a local Hugging Face folder (config.json + *.safetensors). ``torch_dtype``
        is the dtype of the Megatron parameters (default float32) and of exports (default: the
        config's)."""
        folder = _hf_folder(path)
        return cls(_read_config(folder / "config.json"), folder, torch_dtype=torch_dtype)

    @classmethod
    def from_hf_config(cls, config: Any) -> "AutoBridge":
        """A bridge for an architecture alone (a transformers config or its dict); no weights."""
        from mbridge_models.conversion.hf_config import as_dict

        return cls(as_dict(config))

    @classmethod
    def from_megatron_checkpoint(cls, path: str | os.PathLike) -> "AutoBridge":
        """The bridge of a Megatron checkpoint (save root or ``iter_*`` folder), from the
        Hugging Face files it keeps in ``hf_assets/``."""
        from mbridge_train.checkpointing import CheckpointError
        from mbridge_train.hf_assets import ASSETS, assets_of

        directory = _checkpoint_directory(path)
        assets = assets_of(directory)
        if assets is None:
            raise CheckpointError(f"{directory}: has no {ASSETS}/config.json (saved without "
                                  "Hugging Face files); use AutoBridge.from_hf_pretrained(HF_DIR)"
                                  ".export_ckpt(...) with the model's Hugging Face folder")
        bridge = cls(_read_config(assets / "config.json"), assets_path=assets)
        bridge.megatron_path = directory
        return bridge

    @staticmethod
    def list_supported_models() -> list[str]:
        from mbridge_models.conversion import list_supported_models

        return list_supported_models()

    @staticmethod
    def supports(config: Any) -> bool:
        from mbridge_models.conversion import supports

        return supports(config)

    @classmethod
    def can_handle(cls, path: str | os.PathLike, trust_remote_code: bool = False) -> bool:
        """Whether ``path`` is a local Hugging Face folder of a supported architecture."""
        config = Path(path) / "config.json"
        try:
            return cls.supports(json.loads(config.read_text()))
        except (OSError, ValueError):
            return False

    # ------------------------------------------------------------------ to Megatron

    def to_megatron_provider(self, load_weights: bool = True, hf_path: str | None = None,
                             show_progress: bool = False, **overrides: Any):
        """The GPTModelProvider of this architecture (``overrides``: parallelism, precision,
        layer spec). With ``load_weights``, every model it ``provide()``s is filled from the
        Hugging Face folder (each rank reads only its shard)."""
        from mbridge_models.conversion import provider_from_hf_config

        fields = {}
        if self.torch_dtype is not None:
            fields = {"params_dtype": self.torch_dtype, "bf16": self.torch_dtype == torch.bfloat16,
                      "fp16": self.torch_dtype == torch.float16}
        if self.hf_path is not None:
            fields["hf_model_id"] = str(self.hf_path.resolve())
        provider = provider_from_hf_config(self.hf_config, **{**fields, **overrides})
        self._provider = provider
        source = Path(hf_path) if hf_path else self.hf_path
        if load_weights and source is not None:
            build = provider.provide

            def provide(*args, **kwargs):
                model = build(*args, **kwargs)
                self.load_hf_weights(model, source, provider=provider,
                                     show_progress=show_progress)
                return model

            object.__setattr__(provider, "provide", provide)
        return provider

    def to_megatron_model(self, load_weights: bool = True, hf_path: str | None = None,
                          wrap_with_ddp: bool = True, use_cpu_initialization: bool = False,
                          **overrides: Any) -> list:
        """The model chunks of this rank on the provider's parallel layout (``overrides``),
        weights loaded; model-parallel groups are created when none exist."""
        from megatron.core import parallel_state

        from mbridge_train.distributed import initialize_distributed

        provider = self.to_megatron_provider(load_weights=load_weights, hf_path=hf_path,
                                             use_cpu_initialization=use_cpu_initialization,
                                             **overrides)
        initialize_distributed()
        if not parallel_state.model_parallel_is_initialized():
            provider.initialize_model_parallel(seed=0)
        return provider.provide_distributed_model(wrap_with_ddp=wrap_with_ddp)

    def load_hf_weights(self, model: Any, hf_path: str | os.PathLike | None = None,
                        provider: Any = None, show_progress: bool = False) -> None:
        """Fill ``model`` (chunk or list of chunks, any TP / PP layout) from safetensors."""
        from mbridge_models.conversion.hf_io import HFWeights
        from mbridge_models.conversion.weights import load_hf_weights

        source = Path(hf_path) if hf_path is not None else self.hf_path
        if source is None:
            raise ConversionError("load_hf_weights: this bridge has no Hugging Face folder "
                                  "(made from a config or a checkpoint); pass hf_path")
        progress = ((lambda items, total: _progress(items, total, "import", True))
                    if show_progress and _rank() == 0 else None)
        load_hf_weights(model, HFWeights(source), self._provider_for(provider), self.architecture,
                        progress=progress)

    @classmethod
    def import_ckpt(cls, hf_model_id: str | os.PathLike, megatron_path: str | os.PathLike,
                    torch_dtype=None, show_progress: bool = False, **overrides: Any) -> str:
        """Convert a local Hugging Face folder into a Megatron checkpoint at ``megatron_path``
        (iteration 0, loadable on any layout) that also keeps the folder's config and tokenizer
        files; returns the iteration folder. Runs on one process."""
        bridge = cls.from_hf_pretrained(hf_model_id, torch_dtype=torch_dtype)
        return bridge.save_megatron_checkpoint(megatron_path, show_progress=show_progress,
                                               **overrides)

    def save_megatron_checkpoint(self, megatron_path: str | os.PathLike,
                                 show_progress: bool = False, **overrides) -> str:
        from mbridge_train import checkpointing

        with _single_process("AutoBridge.import_ckpt"):
            provider = self.to_megatron_provider(load_weights=True, use_cpu_initialization=True,
                                                 show_progress=show_progress,
                                                 **{**_NO_INIT, **overrides})
            provider.initialize_model_parallel(seed=0)
            model = provider.provide()
            return checkpointing.save_model_weights([model], str(megatron_path), provider)

    # ------------------------------------------------------------------ to Hugging Face

    def export_hf_weights(self, model: Any, cpu: bool = True, show_progress: bool = False,
                          provider: Any = None) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield ``(hf_name, tensor)`` one tensor at a time (collective: every model-parallel
        rank iterates and receives every tensor). Adapters are not included (see
        ``save_hf_pretrained(merge_adapter_weights=True)`` and ``save_hf_adapter``)."""
        from mbridge_models.conversion.weights import export_hf_weights

        provider = self._provider_for(provider)
        dtype = self.export_dtype()
        names = self.architecture.hf_names(provider)
        stream = export_hf_weights(model, provider, self.architecture, cpu=cpu)
        for name, tensor in _progress(stream, len(names), "export", show_progress):
            yield name, (tensor.to(dtype) if dtype is not None else tensor)

    def save_hf_weights(self, model: Any, path: str | os.PathLike, show_progress: bool = True,
                        max_shard_size: int | str = "2GB") -> Path | None:
        """Sharded safetensors + model.safetensors.index.json at ``path`` (temp folder +
        rename; global rank 0 writes, every rank must call)."""
        return self._save(model, path, show_progress, max_shard_size, with_assets=False)

    def save_hf_pretrained(self, model: Any, path: str | os.PathLike, show_progress: bool = True,
                           merge_adapter_weights: bool = True,
                           max_shard_size: int | str = "2GB") -> Path | None:
        """A folder ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` load: weights,
        config.json, generation_config.json and tokenizer files. LoRA / DoRA adapters are merged
        into the exported weights (the model is left as it was) unless
        ``merge_adapter_weights=False``, which exports the base weights."""
        from mbridge_peft import merge, unmerge, wrappers

        adapted = merge_adapter_weights and bool(wrappers(model))
        if adapted:
            merge(model)
        try:
            return self._save(model, path, show_progress, max_shard_size, with_assets=True)
        finally:
            if adapted:
                unmerge(model)

    def save_hf_adapter(self, model: Any, path: str | os.PathLike,
                        base_model_name_or_path: str | None = None, provider: Any = None):
        """The model's adapters as a Hugging Face PEFT folder (``peft`` loads it)."""
        from mbridge_peft import export_hf_peft

        return export_hf_peft(model, self._provider_for(provider), path,
                              base_model_name_or_path=base_model_name_or_path
                              or self.hf_config.get("_name_or_path"))

    @_either
    def export_ckpt(self, cls, megatron_path: str | os.PathLike, hf_path: str | os.PathLike,
                    show_progress: bool = True, merge_adapter_weights: bool = True,
                    max_shard_size: int | str = "2GB", **overrides: Any) -> Path:
        """A Megatron checkpoint (save root or iter folder) -> a Hugging Face folder. As a
        classmethod the architecture, config and tokenizer come from the checkpoint's own
        hf_assets; an adapter-only (PEFT) checkpoint is merged onto the base weights it names."""
        from mbridge_train.checkpointing import load_pretrained_weights
        from mbridge_train.hf_assets import assets_of

        directory = _checkpoint_directory(megatron_path)
        bridge = self if self is not None else cls.from_megatron_checkpoint(directory)
        assets = assets_of(directory)
        if assets is not None:
            _check_same_architecture(bridge, assets / "config.json", directory)
        with _single_process("AutoBridge.export_ckpt"):
            provider = bridge.to_megatron_provider(load_weights=False,
                                                   use_cpu_initialization=True,
                                                   **{**_NO_INIT, **overrides})
            provider.initialize_model_parallel(seed=0)
            model = [provider.provide()]
            if _adapters_only(directory):
                _load_adapted(model, directory)
            else:
                load_pretrained_weights(str(directory), model)
            return bridge.save_hf_pretrained(model, hf_path, show_progress=show_progress,
                                             merge_adapter_weights=merge_adapter_weights,
                                             max_shard_size=max_shard_size)

    @_either
    def export_adapter_ckpt(self, cls, peft_checkpoint: str | os.PathLike,
                            output_path: str | os.PathLike, **overrides: Any) -> Path:
        """An adapter-only (PEFT) Megatron checkpoint -> a Hugging Face PEFT adapter folder
        (adapter_model.safetensors + adapter_config.json), from the checkpoint alone."""
        from mbridge_train.checkpointing import CheckpointError

        directory = _checkpoint_directory(peft_checkpoint)
        bridge = self if self is not None else cls.from_megatron_checkpoint(directory)
        if not _adapters_only(directory):
            raise CheckpointError(f"{directory}: holds a full model, not PEFT adapters (use "
                                  "export_ckpt)")
        with _single_process("AutoBridge.export_adapter_ckpt"):
            provider = bridge.to_megatron_provider(load_weights=False,
                                                   use_cpu_initialization=True, **overrides)
            provider.initialize_model_parallel(seed=0)
            model = [provider.provide()]
            _load_adapted(model, directory)
            return bridge.save_hf_adapter(model, output_path, provider=provider)

    def export_dtype(self) -> torch.dtype | None:
        """The dtype exports are written in: ``torch_dtype``, else the config's."""
        if self.torch_dtype is not None:
            return self.torch_dtype
        name = self.hf_config.get("dtype") or self.hf_config.get("torch_dtype")
        return _dtype(name) if name else None

    def hf_config_for_export(self, provider: Any = None) -> dict:
        config = dict(self.hf_config)
        config["architectures"] = [self.architecture.hf_architecture]
        dtype = self.export_dtype()
        if dtype is not None:
            config["torch_dtype"] = config["dtype"] = str(dtype).removeprefix("torch.")
        return config

    # ------------------------------------------------------------------ helpers

    def _provider_for(self, provider: Any = None):
        if provider is not None:
            return provider
        if self._provider is None:
            self.to_megatron_provider(load_weights=False)
        return self._provider

    def _save(self, model, path, show_progress, max_shard_size, with_assets) -> Path | None:
        from mbridge_models.conversion.hf_io import publish, write_sharded
        from mbridge_train.hf_assets import asset_files

        stream = self.export_hf_weights(model, show_progress=show_progress and _rank() == 0)
        if _rank() != 0:
            for _ in stream:  # the gathers are collective; rank 0 writes
                pass
            _barrier()
            return None

        def build(tmp: Path) -> None:
            write_sharded(stream, tmp, max_shard_size)
            if not with_assets:
                return
            if self.assets_path is not None:
                for file in asset_files(self.assets_path):
                    if file.name != "config.json":
                        (tmp / file.name).write_bytes(file.read_bytes())
            (tmp / "config.json").write_text(
                json.dumps(self.hf_config_for_export(), indent=2, sort_keys=True) + "\n")

        try:
            return publish(path, build)
        finally:
            _barrier()


# ---------------------------------------------------------------------- module helpers

# Conversions overwrite every parameter: megatron's random init of the model first is wasted
# time (and a write of every page) for a model about to be overwritten.
_NO_INIT = {"perform_initialization": False}


def _hf_folder(path: str | os.PathLike) -> Path:
    from mbridge_train.checkpointing import CheckpointError

    folder = Path(path)
    if not folder.exists():
        text = str(path)
        hub_like = text.count("/") == 1 and not text.startswith((".", "/", "~"))
        hint = (" (looks like a Hugging Face hub id: this machine downloads nothing and is "
                f"offline; fetch it with `huggingface-cli download {text} --local-dir DIR` where "
                "there is network, then pass DIR)") if hub_like else ""
        raise CheckpointError(f"{path}: no such local folder{hint}")
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{config}: not found; AutoBridge reads local Hugging Face "
                              f"folders (config.json + *.safetensors), it downloads nothing")
    return folder


def _read_config(path: Path) -> dict:
    from mbridge_train.checkpointing import CheckpointError

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable Hugging Face config ({error})") from None


def _checkpoint_directory(path: str | os.PathLike) -> Path:
    from mbridge_train.checkpointing import _pretrained_directory

    return Path(_pretrained_directory(str(path), what="a Megatron checkpoint to export"))


def _check_same_architecture(bridge: AutoBridge, config_path: Path, directory: Path) -> None:
    saved = _read_config(config_path).get("model_type")
    wanted = bridge.hf_config.get("model_type")
    if saved != wanted:
        raise ConversionError(f"{directory}: is a {saved!r} checkpoint ({config_path}), this "
                              f"bridge converts {wanted!r}")


def _adapters_only(directory: Path) -> bool:
    from mbridge_train.checkpointing import _info

    return bool(_info(str(directory)).get("adapters_only"))


def _load_adapted(model: list, directory: Path) -> None:
    """Base weights from the checkpoint an adapter-only save names (hf_assets/mbridge.json), the
    run's PEFT (run_config.yaml) applied, then its adapters loaded."""
    from mbridge_config import ConfigContainer

    from mbridge_train.checkpointing import (CONFIG_FILE, CheckpointError, load_adapter_weights,
                                             load_pretrained_weights)
    from mbridge_train.hf_assets import ASSETS, INFO

    info_path = directory / ASSETS / INFO
    try:
        base = json.loads(info_path.read_text())["pretrained_checkpoint"]
    except (OSError, ValueError, KeyError):
        raise CheckpointError(f"{info_path}: missing or unreadable; an adapter-only checkpoint "
                              "needs it to find its base weights") from None
    if not base:
        raise CheckpointError(f"{info_path}: names no pretrained_checkpoint for the base weights")
    peft = ConfigContainer.from_yaml(directory / CONFIG_FILE).peft
    load_pretrained_weights(base, model)
    peft(model, training=False)
    load_adapter_weights(str(directory), model)


class _single_process:
    """A lone process group (started when none is up) and megatron's groups torn down after."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        from mbridge_train.distributed import initialize_distributed

        initialize_distributed()
        if torch.distributed.get_world_size() != 1:
            raise RuntimeError(f"{self.what} converts on one process; run it without torchrun "
                               "(any parallel layout can load or export through "
                               "to_megatron_model / save_hf_pretrained)")
        return self

    def __exit__(self, *exc):
        from megatron.core import parallel_state

        parallel_state.destroy_model_parallel()
        return False


def _dtype(value) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ConversionError(f"torch_dtype {value!r} is not a torch dtype")
    return dtype


def _progress(items, total: int, what: str, show: bool):
    if not show:
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=what, unit="tensor")


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _barrier() -> None:
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()
