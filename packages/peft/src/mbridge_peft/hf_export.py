"""Export adapters in Hugging Face PEFT format (adapter_model.safetensors + adapter_config.json).

Fused megatron linears map onto Hugging Face's separate projections exactly: a LoRA on
``linear_qkv`` with one A and B rows in megatron's grouped order is q/k/v LoRAs sharing that A,
each with its own rows of B (and of DoRA's magnitude, a per-row quantity); ``linear_fc1`` splits
into gate_proj / up_proj the same way. The ``peft`` library then loads the directory with
``PeftModel.from_pretrained`` onto the Hugging Face model and reproduces mbridge's outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from mbridge_config.errors import MBridgeError
from safetensors.torch import save_file

from mbridge_models.conversion.llama import hf_linear_names, split_output_rows
from mbridge_peft.adapters import DoRAAdapter
from mbridge_peft.base import wrappers
from mbridge_peft.state import atomic_write, collect_full_adapter_state

PREFIX = "base_model.model."


class ExportError(MBridgeError, ValueError):
    """The adapted model has adapters Hugging Face PEFT cannot represent."""


def hf_adapter_tensors(full: dict[str, torch.Tensor], provider: Any) -> dict[str, torch.Tensor]:
    """Full mbridge adapter tensors -> Hugging Face PEFT tensors."""
    out = {}
    modules = sorted({key.split(".adapter.")[0] for key in full})
    for name in modules:
        mapped = hf_linear_names(name, provider)
        if mapped is None:
            raise ExportError(f"{name} has no Hugging Face counterpart; export supports "
                              "linear_qkv, linear_proj, linear_fc1 and linear_fc2 of the decoder")
        hf_names, split = mapped
        a = full[f"{name}.adapter.linear_in.weight"]
        b_parts = split_output_rows(full[f"{name}.adapter.linear_out.weight"], split, provider)
        magnitude = full.get(f"{name}.adapter.weight_magnitude")
        m_parts = split_output_rows(magnitude, split, provider) if magnitude is not None else None
        for index, hf_name in enumerate(hf_names):
            out[f"{PREFIX}{hf_name}.lora_A.weight"] = a.clone()  # shared A, one copy each
            out[f"{PREFIX}{hf_name}.lora_B.weight"] = b_parts[index].contiguous()
            if m_parts is not None:
                out[f"{PREFIX}{hf_name}.lora_magnitude_vector"] = m_parts[index].contiguous()
    return out


def adapter_config(model: Any, target_modules: list[str],
                   base_model_name_or_path: str | None) -> dict:
    """adapter_config.json for the adapters of ``model`` (one rank and alpha for all)."""
    adapters = [w.adapter for _, w in wrappers(model)]
    if not adapters:
        raise ExportError("the model has no adapters to export")
    ranks = {(a.dim, a.alpha) for a in adapters}
    if len(ranks) != 1:
        raise ExportError(f"adapters use several (dim, alpha) pairs {sorted(ranks)}; Hugging Face "
                          "PEFT needs one")
    (dim, alpha), = ranks
    dropouts = {a.dropout for a in adapters}
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": dim,
        "lora_alpha": alpha,
        "lora_dropout": max(dropouts),
        "target_modules": target_modules,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_dora": isinstance(adapters[0], DoRAAdapter),
        "use_rslora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
    }


def export_hf_peft(model: Any, provider: Any, directory: str | os.PathLike,
                   base_model_name_or_path: str | None = None) -> Path | None:
    """Write the adapters of ``model`` as a Hugging Face PEFT adapter directory.

    ``provider`` describes the architecture (heads and query groups split the fused QKV rows).
    Collective under model parallelism; global rank 0 writes and gets the directory back.
    """
    config = adapter_config(model, [], base_model_name_or_path or getattr(provider, "hf_model_id", None))
    full = collect_full_adapter_state(model)
    if full is None:
        return None
    tensors = hf_adapter_tensors(full, provider)
    # Full module names: exactly the adapted projections (wildcard targets may skip layers).
    config["target_modules"] = sorted({key[len(PREFIX):].rsplit(".lora_", 1)[0]
                                       for key in tensors})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / "adapter_model.safetensors", lambda tmp: save_file(tensors, tmp))
    atomic_write(directory / "adapter_config.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    return directory
