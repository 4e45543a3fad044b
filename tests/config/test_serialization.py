"""Values YAML cannot hold directly: callables, partials, enums, dtypes; atomic writes."""

import functools
import signal

import pytest
import torch
from fake_provider import FakeModelProvider

from mbridge_config import ConfigContainer, ConfigError
from mbridge_config.serialization import from_dict, to_dict, write_yaml


def module_level(x):
    return x


@pytest.mark.parametrize("value", [
    torch.nn.init.xavier_uniform_,
    functools.partial(torch.nn.init.normal_, mean=0.0, std=0.02),
    torch.nn.functional.gelu,
    signal.SIGUSR1,
    torch.bfloat16,
    module_level,
])
def test_round_trip_of_values_yaml_cannot_hold(value):
    expected = type(value) if isinstance(value, (signal.Signals, torch.dtype)) else object
    back = from_dict(to_dict(value), expected)
    if isinstance(value, functools.partial):
        assert back.func is value.func and back.keywords == value.keywords
    else:
        assert back == value


def test_a_lambda_is_an_error_naming_the_field(tmp_path):
    cfg = ConfigContainer(model=FakeModelProvider())
    cfg.optimizer.timers = lambda: None
    with pytest.raises(ConfigError, match=r"optimizer.timers: .*lambda"):
        cfg.to_yaml(tmp_path / "x.yaml")


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "run.yaml"
    path.write_text("old: content\n")
    cfg = ConfigContainer(model=FakeModelProvider())

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    import mbridge_config.serialization as ser

    monkeypatch.setattr(ser, "to_yaml_text", lambda c: "new: content\n")
    monkeypatch.setattr(ser.os, "replace", broken_dump)
    with pytest.raises(OSError):
        write_yaml(cfg, path)
    assert path.read_text() == "old: content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.yaml"]
