"""The wheel carries the C++/CUDA sources the extension loader looks for."""

import tomllib
from pathlib import Path

from mbridge_kernels import _extension

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "kernels"


def test_wheel_force_includes_every_source_the_loader_builds():
    wheel = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["wheel"]
    [(source, target)] = wheel["force-include"].items()
    assert target == "mbridge_kernels/csrc"  # where _extension.csrc_dir() looks first
    src = (PACKAGE / source).resolve()
    assert src == _extension.csrc_dir().resolve()
    for name in _extension.CPU_SOURCES + _extension.CUDA_SOURCES:
        assert (src / name).is_file(), name
