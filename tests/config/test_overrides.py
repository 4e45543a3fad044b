"""Dotted overrides equal the same values set in Python; bad ones name the key and change nothing."""

import copy

import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st
from strategies import paths, preset_spellings, valid_containers

from mbridge_config import ConfigError, ProfilingConfig, apply_overrides
from mbridge_config.overrides import parse_override

# (dotted key, values to try, how to write a value on a command line)
CATALOG = [
    ("train.train_iters", st.integers(1, 10**7), str),
    ("train.eval_interval", st.none() | st.integers(1, 1000), None),
    ("train.manual_gc", st.booleans(), None),
    ("optimizer.lr", st.floats(1e-7, 1.0), repr),  # "1e-07" is a YAML string: coerced to float
    ("optimizer.params_dtype", st.sampled_from([torch.bfloat16, torch.float16]),
     lambda v: str(v).removeprefix("torch.")),
    ("model.tensor_model_parallel_size", st.integers(1, 8), str),
    ("scheduler.lr_decay_style", st.sampled_from(["constant", "cosine", "WSD"]), str),
    ("checkpoint.save", paths, None),
    ("checkpoint.most_recent_k", st.integers(-1, 10), str),
    ("logger.wandb_project", st.text(min_size=1, max_size=10), None),
    ("rng.seed", st.integers(0, 2**31), str),
    ("mixed_precision", preset_spellings, str),
    ("dist.lazy_init", st.booleans(), None),
]


def _written(value, fmt):
    if fmt is not None:
        return fmt(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def _set(cfg, key, value):
    *parents, name = key.split(".")
    node = cfg
    for part in parents:
        node = getattr(node, part)
    setattr(node, name, value)


@given(valid_containers(), st.lists(st.sampled_from(CATALOG), min_size=1, max_size=5), st.data())
def test_overrides_equal_python_assignment(case, chosen, data):
    _, cfg = case
    by_python = copy.deepcopy(cfg)
    texts, mapping = [], {}
    for key, values, fmt in chosen:
        value = data.draw(values, label=key)
        _set(by_python, key, value)
        texts.append(f"{key}={_written(value, fmt)}")
        mapping[key] = value
    as_mapping = copy.deepcopy(cfg)
    apply_overrides(cfg, texts)
    assert cfg.to_dict() == by_python.to_dict()
    apply_overrides(as_mapping, mapping)  # Python values, as code passes its settings
    assert as_mapping.to_dict() == by_python.to_dict()


def test_unknown_key_suggests_and_changes_nothing():
    from test_validate import valid

    cfg = valid()
    before = copy.deepcopy(cfg)
    with pytest.raises(ConfigError, match=r"train\.train_iter: unknown key in train; did you mean 'train_iters'"):
        apply_overrides(cfg, ["train.train_iters=5", "train.train_iter=7"])
    assert cfg == before  # all or nothing


@pytest.mark.parametrize("override, field, complaint", [
    ("optimizer.lr=fast", "optimizer.lr", "expected"),
    ("train.micro_batch_size=1.5", "train.micro_batch_size", "expected an integer"),
    ("train.manual_gc=maybe", "train.manual_gc", "expected true or false"),
    ("checkpoint.ckpt_format=zip", "checkpoint.ckpt_format", "must be one of"),
    ("optimizer.params_dtype=float99", "optimizer.params_dtype", "torch dtype"),
    ("train.exit_signal=SIGNOPE", "train.exit_signal", "expected one of"),
    ("dataset.blend=notalist", "dataset.blend", "expected a list"),
    ("train.train_iters.deeper=1", "train.train_iters", "not a config"),
])
def test_wrong_values_name_the_field(override, field, complaint):
    from test_validate import valid

    with pytest.raises(ConfigError, match=complaint) as info:
        apply_overrides(valid(), [override])
    assert info.value.fields == [field]


def test_reset_null_and_creating_a_sub_config():
    from test_validate import valid

    cfg = valid()
    apply_overrides(cfg, ["profiling=null", "~train.eval_interval",
                          "dataset.blend=[x, y]", "dataset.blend_weights=[1, 2.5]"])
    assert cfg.profiling is None and cfg.train.eval_interval == 1000
    assert cfg.dataset.blend == ["x", "y"] and cfg.dataset.blend_weights == [1, 2.5]
    apply_overrides(cfg, ["profiling.use_pytorch_profiler=true", "profiling.profile_ranks=[0]"])
    assert cfg.profiling == ProfilingConfig(use_pytorch_profiler=True, profile_ranks=[0])


@pytest.mark.parametrize("text, parsed", [
    ("a.b=1", ("a.b", 1, False)),
    ("a=3e-4", ("a", "3e-4", False)),  # YAML 1.1 keeps it a string; the field type decides
    ("a=[1, two]", ("a", [1, "two"], False)),
    ("a=null", ("a", None, False)),
    ("a=x:y", ("a", "x:y", False)),
    ("~a.b", ("a.b", None, True)),
    ("a=", ("a", "", False)),
])
def test_parse_override(text, parsed):
    assert parse_override(text) == parsed


@pytest.mark.parametrize("text", ["novalue", "=3"])
def test_malformed_override(text):
    with pytest.raises(ConfigError, match="key=value"):
        parse_override(text)
