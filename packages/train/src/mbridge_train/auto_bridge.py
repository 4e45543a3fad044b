"""AutoBridge: a Hugging Face checkpoint folder -> a provider, or a Megatron checkpoint to
fine-tune from (``checkpoint.pretrained_checkpoint``), as Megatron Bridge's AutoBridge does.

Llama-style architectures (Llama, Mistral, Qwen2: mbridge_models.conversion.llama). Only local
folders holding ``config.json`` and ``*.safetensors``: nothing is downloaded, so a hub id must
be a folder on disk. ``import_ckpt`` writes the same torch_dist layout training saves
(``iter_0000000`` + tracker), so every parallel layout can load it (dist_checkpointing
reshards).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class AutoBridge:
    """One Hugging Face checkpoint folder and the provider of its architecture."""

    def __init__(self, hf_path: str | Path, hf_config: dict[str, Any]):
        self.hf_path = Path(hf_path)
        self.hf_config = hf_config

    @classmethod
    def from_hf_pretrained(cls, hf_path: str | Path) -> "AutoBridge":
        path = Path(hf_path)
        config = path / "config.json"
        if not config.is_file():
            from mbridge_train.checkpointing import CheckpointError

            raise CheckpointError(f"{config}: not found; AutoBridge reads local Hugging Face "
                                  f"folders (config.json + *.safetensors), it downloads nothing")
        return cls(path, json.loads(config.read_text()))

    def to_megatron_provider(self, **overrides: Any):
        """The GPTModelProvider of this architecture (``overrides``: parallelism, precision)."""
        from mbridge_models.conversion.llama import provider_from_hf_config

        return provider_from_hf_config(self.hf_config, **overrides)

    def hf_state_dict(self) -> dict:
        from safetensors.torch import load_file

        files = sorted(self.hf_path.glob("*.safetensors"))
        if not files:
            from mbridge_train.checkpointing import CheckpointError

            raise CheckpointError(f"{self.hf_path}: no *.safetensors weights")
        state: dict = {}
        for file in files:
            state.update(load_file(str(file)))
        return state

    @classmethod
    def import_ckpt(cls, hf_model_id: str | Path, megatron_path: str | Path, **overrides) -> str:
        """Convert the folder ``hf_model_id`` into a Megatron checkpoint at ``megatron_path``;
        returns the checkpoint folder. Runs on one process (a lone gloo/NCCL group is started
        when none is up) and needs the whole model in memory once."""
        return cls.from_hf_pretrained(hf_model_id).save_megatron_checkpoint(megatron_path,
                                                                           **overrides)

    def save_megatron_checkpoint(self, megatron_path: str | Path, **overrides) -> str:
        import torch

        from mbridge_models.conversion.llama import load_hf_weights
        from mbridge_train import checkpointing
        from mbridge_train.distributed import initialize_distributed

        initialize_distributed()
        if torch.distributed.get_world_size() != 1:
            raise RuntimeError("AutoBridge.import_ckpt converts on one process; run it without "
                               "torchrun (any parallel layout can load the result)")
        provider = self.to_megatron_provider(use_cpu_initialization=True, **overrides)
        provider.initialize_model_parallel(seed=0)
        try:
            model = provider.provide()
            load_hf_weights(model, self.hf_state_dict(), provider)
            return checkpointing.save_model_weights([model], str(megatron_path))
        finally:
            from megatron.core import parallel_state

            parallel_state.destroy_model_parallel()
