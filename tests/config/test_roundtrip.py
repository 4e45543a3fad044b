"""Random valid containers validate and survive YAML unchanged; random corruption is named."""

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from strategies import valid_containers

from mbridge_config import ConfigContainer, ConfigError


@given(valid_containers())
def test_valid_containers_validate_and_round_trip_through_yaml(tmp_path_factory, case):
    world, cfg = case
    cfg.validate(world_size=world)
    path = tmp_path_factory.mktemp("yaml") / "run.yaml"
    text = cfg.to_yaml(path)
    loaded = ConfigContainer.from_yaml(path)
    assert loaded == cfg
    assert loaded.to_yaml() == text
    loaded.validate(world_size=world)


def _leaves(data, prefix=""):
    """(dotted path, value) of every scalar leaf of a to_dict() tree, _target_ keys excluded."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not key.startswith("_"):
                yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    elif not isinstance(data, list):
        yield prefix, data


def _replace(data, dotted, value):
    *parents, last = dotted.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


@given(valid_containers(), st.data())
def test_a_wrongly_typed_value_is_rejected_naming_its_field(case, data):
    _, cfg = case
    tree = cfg.to_dict()
    typed = [(p, v) for p, v in _leaves(tree) if isinstance(v, (bool, int, float))]
    path, value = data.draw(st.sampled_from(typed))
    _replace(tree, path, "certainly-not-a-number" if not isinstance(value, bool) else [1, 2])
    with pytest.raises(ConfigError) as info:
        ConfigContainer.from_dict(tree)
    assert path in info.value.fields, (path, str(info.value))


@given(valid_containers(), st.data())
def test_an_unknown_key_is_rejected_with_the_closest_name(case, data):
    _, cfg = case
    tree = cfg.to_dict()
    path, _ = data.draw(st.sampled_from(list(_leaves(tree))))
    *parents, last = path.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[last + "s"] = node.pop(last)  # a typo: one letter too many
    with pytest.raises(ConfigError) as info:
        ConfigContainer.from_dict(tree)
    assert info.value.fields == [".".join([*parents, last + "s"])]
    if len(last) > 3:
        assert f"did you mean '{last}'" in str(info.value)


def test_hand_written_yaml_needs_no_targets(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"_target_": "fake_provider.FakeModelProvider", "seq_length": 64},
        "train": {"train_iters": 5, "micro_batch_size": 1, "global_batch_size": 4},
        "optimizer": {"lr": "3e-4", "params_dtype": "bf16"},
        "dataset": {"sequence_length": 64, "blend": ["x"]},
        "mixed_precision": "bf16-mixed",
    }))
    cfg = ConfigContainer.from_yaml(path)
    import torch

    assert cfg.optimizer.lr == 3e-4 and cfg.optimizer.params_dtype is torch.bfloat16
    assert type(cfg.dataset).__name__ == "GPTDatasetConfig"  # the union's dataclass named by keys
    cfg.validate(world_size=4)


@pytest.mark.parametrize("content, complaint", [
    ("model: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("model: {_target_: os.path.join}\n", "is not a config dataclass"),
    ("model: {_target_: no.such.module.Thing}\n", "cannot import"),
    ("model: {_target_: fake_provider.FakeModelProvider}\ntrain: "
     "{_target_: mbridge_config.training.LoggerConfig}\n", "is not a TrainingConfig"),
])
def test_bad_files_get_one_clear_error_naming_the_file(tmp_path, content, complaint):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=complaint) as info:
        ConfigContainer.from_yaml(path)
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such YAML file: .*missing.yaml"):
        ConfigContainer.from_yaml(tmp_path / "missing.yaml")


def _dp(world, cfg):
    m = cfg.model
    return world // (m.tensor_model_parallel_size * m.pipeline_model_parallel_size)


# Breakers that invalidate *any* valid container: (field the error must name, mutation).
RANDOM_BREAKERS = {
    "train.micro_batch_size": lambda w, c: setattr(c.train, "micro_batch_size", 0),
    # Not a multiple of micro x DP when that is > 1; every size is a multiple of 1, so then 0.
    "train.global_batch_size": lambda w, c: setattr(
        c.train, "global_batch_size",
        (c.train.micro_batch_size * _dp(w, c) * 3 + 1) if c.train.micro_batch_size * _dp(w, c) > 1
        else 0),
    "train.train_iters": lambda w, c: setattr(c.train, "train_iters", None),
    "logger.log_interval": lambda w, c: setattr(c.logger, "log_interval", 0),
    "checkpoint.most_recent_k": lambda w, c: setattr(c.checkpoint, "most_recent_k", 0),
    "checkpoint.async_save": lambda w, c: (setattr(c.checkpoint, "async_save", True),
                                           setattr(c.checkpoint, "ckpt_format", "torch")),
    "checkpoint.pretrained_checkpoint": lambda w, c: (
        setattr(c, "peft", __import__("fake_provider").FakePEFT()),
        setattr(c.checkpoint, "pretrained_checkpoint", None)),
    # An explicit decay length, so the breaker holds whatever train_iters is (None included).
    "scheduler.lr_warmup_iters": lambda w, c: (
        setattr(c.scheduler, "lr_decay_iters", 5), setattr(c.scheduler, "lr_warmup_iters", 6)),
    "model": lambda w, c: setattr(c.model, "pipeline_model_parallel_size", 8 * w + 3),
    "mixed_precision": lambda w, c: setattr(c, "mixed_precision", "bf16_mixed_please"),
    "profiling.profile_ranks": lambda w, c: setattr(
        c, "profiling", __import__("mbridge_config").ProfilingConfig(profile_ranks=[w])),
    "dataset": lambda w, c: setattr(c, "dataset", None),
}


@given(valid_containers(), st.lists(st.sampled_from(sorted(RANDOM_BREAKERS)), min_size=1,
                                    max_size=3, unique=True))
def test_random_invalid_containers_name_the_offending_fields(case, broken):
    world, cfg = case
    for field in broken:
        RANDOM_BREAKERS[field](world, cfg)
    with pytest.raises(ConfigError) as info:
        cfg.validate(world_size=world)
    reported = set(info.value.fields)
    # The batch rule checks in order and stops at the first problem: a world the model parallel
    # sizes do not divide leaves no dp to check batches against, and a bad micro batch leaves
    # nothing to check the global batch against.
    expected = set(broken)
    if "model" in broken:
        expected -= {"train.micro_batch_size", "train.global_batch_size"}
    if "train.micro_batch_size" in broken:
        expected.discard("train.global_batch_size")
    assert expected <= reported, (broken, str(info.value))
