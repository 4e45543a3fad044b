"""Presets by any spelling; the chosen precision overrides model, optimizer and DDP settings."""

import pytest
import torch
from fake_provider import FakeModelProvider
from megatron.core.transformer import TransformerConfig

from mbridge_config import (
    ConfigContainer,
    ConfigError,
    DistributedDataParallelConfig,
    MixedPrecisionConfig,
    OptimizerConfig,
    get_mixed_precision_config,
)
from mbridge_config.mixed_precision import PRESETS

EXPECTED_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_consistent(name):
    mp = get_mixed_precision_config(name)
    kind = name[:4] if name != "fp32" else "fp32"
    assert (mp.bf16, mp.fp16, mp.fp32) == (kind == "bf16", kind == "fp16", kind == "fp32")
    assert mp.params_dtype == mp.pipeline_dtype == EXPECTED_DTYPE[kind]
    assert ("fp8" in name or "mxfp8" in name) == (mp.fp8 is not None)


@pytest.mark.parametrize("spelling", ["bf16_mixed", "bf16-mixed", "BF16-Mixed", " bf16_mixed "])
def test_spellings(spelling):
    assert get_mixed_precision_config(spelling) == get_mixed_precision_config("bf16_mixed")


def test_lightning_spellings():
    assert get_mixed_precision_config("16-mixed").fp16
    assert get_mixed_precision_config("32").fp32


def test_unknown_preset_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match="mixed_precision: unknown preset 'bf16_mixd'; did you "
                                          "mean 'bf16_mixed'"):
        get_mixed_precision_config("bf16_mixd")


def test_two_precisions_at_once_are_rejected():
    with pytest.raises(ConfigError, match="at most one"):
        MixedPrecisionConfig(bf16=True, fp16=True)


@pytest.mark.parametrize("preset", ["bf16_mixed", "fp16_mixed", "fp32"])
def test_preset_overrides_conflicting_megatron_settings(preset):
    model = TransformerConfig(num_layers=2, hidden_size=64, num_attention_heads=4, fp16=True,
                              params_dtype=torch.float16)
    optimizer = OptimizerConfig(fp16=True, params_dtype=torch.float16, loss_scale=128.0)
    ddp = DistributedDataParallelConfig(grad_reduce_in_fp32=False)
    get_mixed_precision_config(preset).setup(model, optimizer, ddp)
    dtype = EXPECTED_DTYPE[preset[:4]]
    assert model.params_dtype == optimizer.params_dtype == model.pipeline_dtype == dtype
    assert model.bf16 == optimizer.bf16 == (preset == "bf16_mixed")
    assert model.fp16 == optimizer.fp16 == (preset == "fp16_mixed")
    assert ddp.grad_reduce_in_fp32 is True
    assert optimizer.loss_scale is None  # the preset's (dynamic) loss scaling wins


def test_container_finalize_applies_precision_and_overlap():
    from mbridge_config import CommOverlapConfig

    cfg = ConfigContainer(
        model=FakeModelProvider(fp16=True, params_dtype=torch.float16),
        optimizer=OptimizerConfig(fp16=True, use_distributed_optimizer=True),
        ddp=DistributedDataParallelConfig(overlap_grad_reduce=False),
        comm_overlap=CommOverlapConfig(overlap_grad_reduce=True, overlap_p2p_comm=True),
        mixed_precision="bf16-mixed",
    ).finalize()
    assert cfg.model.bf16 and not cfg.model.fp16 and cfg.model.params_dtype == torch.bfloat16
    assert cfg.optimizer.bf16 and not cfg.optimizer.fp16
    assert cfg.ddp.overlap_grad_reduce and cfg.model.overlap_p2p_comm
    assert cfg.ddp.use_distributed_optimizer


def test_no_mixed_precision_leaves_settings_alone():
    model = FakeModelProvider(fp16=True, params_dtype=torch.float16)
    ConfigContainer(model=model).finalize()
    assert model.fp16 and model.params_dtype == torch.float16
