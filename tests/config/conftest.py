"""mbridge-config's tests check its own rules: the rules installed packages add through the
``mbridge_config.rules`` entry point (e.g. mbridge-train's supported checkpoint formats) are
tested beside those packages (tests/train/test_config_homes.py)."""

import pytest

from mbridge_config import container


@pytest.fixture(autouse=True, scope="session")
def config_rules_only():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(container, "_installed_rules", lambda: [])
        yield
