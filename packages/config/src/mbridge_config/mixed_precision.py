"""Mixed-precision recipes, by name or as a config, applied consistently to model/optimizer/DDP.

The chosen precision wins: ``MixedPrecisionConfig.setup`` overwrites the matching fields of the
model provider (a TransformerConfig), the optimizer config and the DDP config, whatever they said,
so the three never disagree (e.g. a bf16 model with an fp16 optimizer).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Literal

import torch

from mbridge_config.errors import ConfigError, did_you_mean


@dataclass(kw_only=True)
class MixedPrecisionConfig:
    fp32: bool = False
    fp16: bool = False
    bf16: bool = False
    params_dtype: torch.dtype | None = None
    pipeline_dtype: torch.dtype | None = None
    autocast_dtype: torch.dtype | None = None
    autocast_enabled: bool = False
    grad_reduce_in_fp32: bool = True
    # FP8 (Transformer Engine on Hopper/Blackwell; kept as config on any hardware)
    fp8: Literal["e4m3", "hybrid"] | None = None
    fp8_recipe: Literal["delayed", "tensorwise", "blockwise", "mxfp8"] = "tensorwise"
    first_last_layers_bf16: bool = False
    fp8_margin: int = 0
    fp8_amax_history_len: int = 1
    fp8_amax_compute_algo: Literal["most_recent", "max"] = "most_recent"
    fp8_wgrad: bool = True
    fp8_dot_product_attention: bool = False
    fp8_multi_head_attention: bool = False
    fp8_param: bool | None = None
    fp8_param_gather: bool = False
    num_layers_at_start_in_bf16: int = 0
    num_layers_at_end_in_bf16: int = 0
    # fp16 loss scaling
    loss_scale: float | None = None
    initial_loss_scale: float | None = 2.0**32
    min_loss_scale: float | None = 1.0
    loss_scale_window: float | None = 1000
    hysteresis: int = 2

    def __post_init__(self) -> None:
        if sum((self.fp32, self.fp16, self.bf16)) > 1:
            raise ConfigError("choose at most one of fp32, fp16 and bf16", field="mixed_precision")
        if self.fp8_param is None:
            self.fp8_param = self.fp8_param_gather
        # The flags decide the dtypes that were left open, so setup() never writes a None dtype.
        flag_dtype = torch.bfloat16 if self.bf16 else torch.half if self.fp16 else torch.float32
        self.params_dtype = self.params_dtype or flag_dtype
        self.pipeline_dtype = self.pipeline_dtype or flag_dtype

    def setup(self, *configs: Any) -> None:
        """Overwrite every same-named field of model, optimizer and DDP configs with ours."""
        for config in configs:
            if config is None:
                continue
            for f in fields(self):
                if f.name != "fp32" and hasattr(config, f.name):
                    setattr(config, f.name, getattr(self, f.name))


def _bf16(**extra: Any) -> MixedPrecisionConfig:
    return MixedPrecisionConfig(bf16=True, params_dtype=torch.bfloat16,
                                pipeline_dtype=torch.bfloat16, autocast_enabled=False, **extra)


def _fp16(**extra: Any) -> MixedPrecisionConfig:
    return MixedPrecisionConfig(fp16=True, params_dtype=torch.half, pipeline_dtype=torch.half,
                                autocast_enabled=False, **extra)


_FP8_DELAYED = dict(fp8="hybrid", fp8_recipe="delayed", fp8_margin=0,
                    fp8_amax_history_len=1024, fp8_amax_compute_algo="max", fp8_param_gather=True)
_FP8_CURRENT = dict(fp8="hybrid", fp8_recipe="tensorwise", first_last_layers_bf16=True,
                    num_layers_at_start_in_bf16=1, num_layers_at_end_in_bf16=1,
                    fp8_param_gather=True)
_MXFP8 = dict(fp8="e4m3", fp8_recipe="mxfp8", fp8_param_gather=False)
_FP8_SUBCHANNEL = dict(fp8="e4m3", fp8_recipe="blockwise", fp8_param_gather=False)

def fp32() -> MixedPrecisionConfig:
    return MixedPrecisionConfig(fp32=True, params_dtype=torch.float32,
                                pipeline_dtype=torch.float32)


def bf16_mixed() -> MixedPrecisionConfig:
    return _bf16()


def fp16_mixed() -> MixedPrecisionConfig:
    return _fp16()


def bf16_with_fp8_delayed_scaling_mixed() -> MixedPrecisionConfig:
    return _bf16(**_FP8_DELAYED)


def fp16_with_fp8_delayed_scaling_mixed() -> MixedPrecisionConfig:
    return _fp16(**_FP8_DELAYED)


def bf16_with_fp8_current_scaling_mixed() -> MixedPrecisionConfig:
    return _bf16(**_FP8_CURRENT)


def fp16_with_fp8_current_scaling_mixed() -> MixedPrecisionConfig:
    return _fp16(**_FP8_CURRENT)


def bf16_with_mxfp8_mixed() -> MixedPrecisionConfig:
    return _bf16(**_MXFP8)


def fp16_with_mxfp8_mixed() -> MixedPrecisionConfig:
    return _fp16(**_MXFP8)


def bf16_with_fp8_subchannel_scaling_mixed() -> MixedPrecisionConfig:
    return _bf16(**_FP8_SUBCHANNEL)


def fp16_with_fp8_subchannel_scaling_mixed() -> MixedPrecisionConfig:
    return _fp16(**_FP8_SUBCHANNEL)


PRESETS: dict[str, Callable[[], MixedPrecisionConfig]] = {
    make.__name__: make
    for make in (
        fp32, bf16_mixed, fp16_mixed,
        bf16_with_fp8_delayed_scaling_mixed, fp16_with_fp8_delayed_scaling_mixed,
        bf16_with_fp8_current_scaling_mixed, fp16_with_fp8_current_scaling_mixed,
        bf16_with_mxfp8_mixed, fp16_with_mxfp8_mixed,
        bf16_with_fp8_subchannel_scaling_mixed, fp16_with_fp8_subchannel_scaling_mixed,
    )
}

# Lightning / NeMo 2.0 spellings.
ALIASES = {"32": "fp32", "32_true": "fp32", "16_mixed": "fp16_mixed", "bf16": "bf16_mixed",
           "fp16": "fp16_mixed"}


def preset_name(name: str) -> str:
    """Canonical preset name: 'bf16-mixed' -> 'bf16_mixed'; unknown names raise ConfigError."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in PRESETS:
        raise ConfigError(
            f"unknown preset '{name}'{did_you_mean(key, PRESETS)} (known: {', '.join(PRESETS)})",
            field="mixed_precision",
        )
    return key


def get_mixed_precision_config(name: str | MixedPrecisionConfig) -> MixedPrecisionConfig:
    """A fresh config for a preset name (any known spelling), or a copy of a given config."""
    if isinstance(name, MixedPrecisionConfig):
        return replace(name)
    return PRESETS[preset_name(name)]()
