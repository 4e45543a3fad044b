"""A real provider inside ConfigContainer: finalize validates it after mixed precision is
applied, YAML round-trips it, command-line overrides reach it."""

from __future__ import annotations

import dataclasses

import pytest
from tiny import llama_like

from mbridge_config import ConfigContainer, ConfigError, MockGPTDatasetConfig, TrainingConfig


def _container(**model):
    return ConfigContainer(
        model=llama_like(**model),
        train=TrainingConfig(micro_batch_size=2, global_batch_size=4, train_iters=5),
        dataset=MockGPTDatasetConfig(sequence_length=16), mixed_precision="bf16_mixed")


def test_finalize_applies_precision_then_validates_the_provider():
    cfg = _container(ffn_hidden_size=None).finalize()
    assert cfg.model.bf16 and str(cfg.model.params_dtype) == "torch.bfloat16"
    assert cfg.model.ffn_hidden_size == 4 * 64  # derived by megatron at finalize
    with pytest.raises(ConfigError, match="model.tensor_model_parallel_size"):
        _container(tensor_model_parallel_size=3).finalize()


def test_yaml_round_trip_keeps_the_provider(tmp_path):
    cfg = _container()
    cfg.to_yaml(tmp_path / "run.yaml")
    back = ConfigContainer.from_yaml(tmp_path / "run.yaml")
    assert type(back.model) is type(cfg.model)
    for f in dataclasses.fields(cfg.model):
        assert getattr(back.model, f.name) == getattr(cfg.model, f.name), f.name


def test_overrides_reach_provider_fields():
    cfg = _container()
    cfg.apply_overrides(["model.num_layers=4", "model.transformer_layer_spec=local"])
    assert cfg.model.num_layers == 4 and cfg.model.transformer_layer_spec == "local"
    with pytest.raises(ConfigError, match="model.num_layer"):
        cfg.apply_overrides(["model.num_layer=4"])
