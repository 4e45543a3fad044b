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
