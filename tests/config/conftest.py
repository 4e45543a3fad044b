"""mbridge-config's tests check its own rules: the rules installed packages add through the
``mbridge_config.rules`` entry point (e.g. mbridge-train's supported checkpoint formats) are
tested beside those packages (tests/train/test_config_homes.py)."""

import pytest

from mbridge_config import container


@pytest.fixture(autouse=True)
def config_rules_only(monkeypatch):
    # Per test, not per session: a session fixture would stay active for every later test.
    monkeypatch.setattr(container, "_installed_rules", lambda: [])
