"""apply_moe_token_drop and apply_deepep: the fields they set, what they refuse, and DeepEP's
hardware and library check at training start."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mbridge_config.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from tiny import llama_like, moe_like  # noqa: E402


def test_token_drop_sets_megatron_core_fields_and_the_provider_still_finalizes():
    from mbridge.training.utils.moe_token_drop import apply_moe_token_drop

    provider = moe_like()
    assert apply_moe_token_drop(provider, moe_expert_capacity_factor=1.5) is provider
    assert provider.moe_expert_capacity_factor == 1.5
    assert provider.moe_pad_expert_input_to_capacity is True
    assert provider.moe_token_drop_policy == "probs"
    provider.finalize()  # megatron-core accepts the combination


def test_token_drop_spec_defaults():
    from mbridge_train.moe_token_drop import apply_moe_token_drop

    provider = apply_moe_token_drop(moe_like(), moe_pad_expert_input_to_capacity=False,
                                    moe_token_drop_policy="position")
    assert (provider.moe_expert_capacity_factor, provider.moe_pad_expert_input_to_capacity,
            provider.moe_token_drop_policy) == (1.0, False, "position")


@pytest.mark.parametrize("provider, kwargs, fields", [
    (llama_like(), {}, ["model.num_moe_experts"]),
    (moe_like(moe_token_dispatcher_type="allgather"), {}, ["model.moe_token_dispatcher_type"]),
    (moe_like(moe_router_load_balancing_type="sinkhorn"), {},
     ["model.moe_router_load_balancing_type"]),
    (moe_like(), {"moe_expert_capacity_factor": 0.0}, ["moe_expert_capacity_factor"]),
    (moe_like(moe_token_dispatcher_type="flex"), {"moe_token_drop_policy": "random"},
     ["model.moe_token_dispatcher_type", "moe_token_drop_policy"]),
])
def test_token_drop_refuses_what_megatron_core_cannot_drop(provider, kwargs, fields):
    from mbridge_train.moe_token_drop import apply_moe_token_drop

    before = provider.moe_expert_capacity_factor
    with pytest.raises(ConfigError) as info:
        apply_moe_token_drop(provider, **kwargs)
    assert info.value.fields == fields
    assert provider.moe_expert_capacity_factor == before  # left unchanged


def test_deepep_selects_the_flex_dispatcher_with_the_deepep_backend():
    from mbridge.training.deepep import apply_deepep
    from mbridge_train.deepep import uses_deepep

    provider = moe_like()
    assert not uses_deepep(provider)
    assert apply_deepep(provider) is provider
    assert provider.moe_token_dispatcher_type == "flex"
    assert provider.moe_flex_dispatcher_backend == "deepep"
    assert uses_deepep(provider)


def test_deepep_refuses_dense_and_padded_providers():
    from mbridge_train.deepep import apply_deepep

    with pytest.raises(ConfigError, match="no experts") as info:
        apply_deepep(llama_like())
    assert info.value.fields == ["model.num_moe_experts"]
    padded = moe_like(moe_expert_capacity_factor=1.0, moe_pad_expert_input_to_capacity=True)
    with pytest.raises(ConfigError) as info:
        apply_deepep(padded)
    assert info.value.fields == ["model.moe_pad_expert_input_to_capacity"]
    assert padded.moe_token_dispatcher_type == "alltoall"


def test_deepep_check_at_training_start(monkeypatch):
    from mbridge_train import deepep

    deepep.validate_deepep(moe_like())  # not using DeepEP: nothing to check
    provider = deepep.apply_deepep(moe_like())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        deepep.validate_deepep(provider)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    with pytest.raises(ConfigError, match=r"Ampere or Hopper .*Tesla V100 is 7\.0"):
        deepep.validate_deepep(provider)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(deepep.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="deep_ep package, which is not installed") as info:
        deepep.validate_deepep(provider)
    assert info.value.fields == ["model.moe_flex_dispatcher_backend"]
    monkeypatch.setattr(deepep.importlib.util, "find_spec", lambda name: object())
    deepep.validate_deepep(provider)  # Hopper with deep_ep: fine


def test_preflight_runs_the_deepep_check(monkeypatch):
    import tiny_run
    from mbridge_train import deepep, preflight

    cfg = tiny_run.config()
    cfg.model = deepep.apply_deepep(moe_like())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="DeepEP needs"):
        preflight.run(cfg)
