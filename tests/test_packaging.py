"""Each package builds a wheel, installs alone with its declared dependencies, and imports.

For every package: `uv build --package X`, a fresh virtual environment, the wheel plus the wheels
of the siblings it declares (and no other), then every module of the package is imported there.
A module that imports something the package does not declare fails here even where the
workspace environment (which has everything) would hide it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_architecture import ROOT, PACKAGES, Package

pytestmark = pytest.mark.multiproc  # spawns uv and fresh interpreters

UV = shutil.which("uv")


def _sibling_closure(package: Package) -> list[Package]:
    by_name = {p.distribution: p for p in PACKAGES}
    todo, seen = [package], {}
    while todo:
        current = todo.pop()
        if current.distribution in seen:
            continue
        seen[current.distribution] = current
        todo += [by_name[d] for d in current.declared if d in by_name]
    return list(seen.values())


def _run(*cmd: str, cwd: Path = ROOT) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(UV, "build", "--all-packages", "--wheel", "--out-dir", str(out))
    return out


@pytest.mark.skipif(UV is None, reason="needs uv on PATH")
@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.distribution)
def test_package_installs_and_imports_on_its_own(package, wheels, tmp_path):
    venv = tmp_path / "venv"
    _run(UV, "venv", "--python", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv))
    python = str(venv / "bin" / "python")
    closure = _sibling_closure(package)
    wheel_files = [
        str(next(wheels.glob(f"{p.module}-*.whl"))) for p in closure
    ]
    # Only the closure's wheels are offered; third-party dependencies come from the index.
    _run(UV, "pip", "install", "--python", python, *wheel_files)

    installed = {p.module for p in closure}
    others = [p.module for p in PACKAGES if p.module not in installed]
    script = f"""
import importlib, importlib.util, pkgutil, sys
import {package.module} as pkg
modules = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
for name in modules:
    try:
        importlib.import_module(name)
    except ImportError as error:  # a module of an optional extra says which one, in one line
        if "install the extra" not in str(error):
            raise
stray = [m for m in {others!r} if importlib.util.find_spec(m) is not None]
assert not stray, f"installed without being declared: {{stray}}"
print(len(modules) + 1, "modules imported")
"""
    out = _run(python, "-c", script, cwd=tmp_path)
    assert "modules imported" in out
