"""The house rules of ../shared/DESIGN.md, checked from the source.

* Each package's pyproject names only the sibling packages DESIGN.md allows below it.
* Each package's imports name only itself, its declared dependencies and the standard library.
* Nothing but user code imports the `mbridge` meta-package.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# DESIGN.md, "Dependency direction": imports only go down.
ALLOWED_SIBLINGS = {
    "kernels": set(),
    "config": set(),
    "models": {"config"},
    "data": {"config"},
    "peft": {"config", "models", "kernels"},
    "train": {"config", "models", "data", "peft", "kernels"},
}


@dataclass(frozen=True)
class Package:
    distribution: str  # "mbridge-models"
    module: str  # "mbridge_models"
    source: Path  # the folder holding the module's code
    declared: frozenset[str]  # normalised distribution names it depends on (extras included)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def read_package(pyproject: Path) -> Package:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    module = project["name"].replace("-", "_")
    source = pyproject.parent / "src" / module
    return Package(project["name"], module, source, frozenset(map(requirement_name, requirements)))


def workspace_packages(root: Path = ROOT) -> list[Package]:
    return [read_package(p) for p in sorted(root.glob("packages/*/pyproject.toml"))]


def imported_top_levels(source: Path) -> dict[str, list[str]]:
    """Top-level module name -> the 'file:line' places importing it (relative imports skipped)."""
    found: dict[str, list[str]] = {}
    for path in sorted(source.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                where = f"{path.relative_to(source.parent.parent.parent)}:{node.lineno}"
                found.setdefault(name.split(".")[0], []).append(where)
    return found


def distributions_of(top_level: str) -> set[str]:
    """Distributions that provide an import name (installed ones, else the name itself)."""
    provided = importlib.metadata.packages_distributions().get(top_level)
    return {normalise(d) for d in provided} if provided else {normalise(top_level)}


def violations(package: Package, siblings: dict[str, str]) -> list[str]:
    """siblings: import name -> distribution name for every workspace package and the meta."""
    problems = []
    for top, places in sorted(imported_top_levels(package.source).items()):
        if top == package.module or top in sys.stdlib_module_names or top == "__future__":
            continue
        if top == "mbridge":
            problems.append(f"{places[0]}: imports the meta-package `mbridge` (only user code may)")
            continue
        wanted = {normalise(siblings[top])} if top in siblings else distributions_of(top)
        if not wanted & package.declared:
            problems.append(
                f"{places[0]}: imports `{top}` but {package.distribution} does not declare "
                f"{' or '.join(sorted(wanted))}"
            )
    return problems


def sibling_modules(packages: list[Package]) -> dict[str, str]:
    return {p.module: p.distribution for p in packages} | {"mbridge": "mbridge"}


PACKAGES = workspace_packages()


def test_all_six_packages_exist():
    assert sorted(p.distribution for p in PACKAGES) == sorted(
        f"mbridge-{name}" for name in ALLOWED_SIBLINGS
    )
    for package in PACKAGES:
        assert (package.source / "__init__.py").is_file(), package.source


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.distribution)
def test_declared_siblings_follow_the_design(package):
    name = package.distribution.removeprefix("mbridge-")
    declared = {d.removeprefix("mbridge-") for d in package.declared if d.startswith("mbridge-")}
    assert declared <= ALLOWED_SIBLINGS[name], (
        f"{package.distribution} declares {sorted(declared - ALLOWED_SIBLINGS[name])}, "
        f"which DESIGN.md puts above or beside it"
    )


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.distribution)
def test_imports_are_declared(package):
    assert violations(package, sibling_modules(PACKAGES)) == []


def test_meta_package_imports_only_declared_packages():
    meta = read_package(ROOT / "pyproject.toml")
    meta = Package(meta.distribution, "mbridge", ROOT / "src" / "mbridge", meta.declared)
    assert violations(meta, sibling_modules(PACKAGES)) == []


# -------------------------------------------------------------- the checker catches violations


def _fake_workspace(tmp_path: Path, config_code: str) -> list[Package]:
    for name, deps in [("config", ["pyyaml"]), ("train", ["mbridge-config", "torch"])]:
        pkg = tmp_path / "packages" / name
        (pkg / "src" / f"mbridge_{name}").mkdir(parents=True)
        (pkg / "pyproject.toml").write_text(
            f'[project]\nname = "mbridge-{name}"\ndependencies = {deps!r}\n'.replace("'", '"')
        )
        (pkg / "src" / f"mbridge_{name}" / "__init__.py").write_text("import os\n")
    (tmp_path / "packages/config/src/mbridge_config/bad.py").write_text(config_code)
    return workspace_packages(tmp_path)


@pytest.mark.parametrize(
    "code, complaint",
    [
        ("from mbridge_train import loop\n", "imports `mbridge_train`"),
        ("def f():\n    import mbridge_train.losses\n", "imports `mbridge_train`"),
        ("import mbridge\n", "imports the meta-package"),
        ("import torch\n", "imports `torch`"),
        ("import yaml, json\nfrom . import sibling\n", None),
    ],
)
def test_checker_flags_an_upward_or_undeclared_import(tmp_path, code, complaint):
    packages = _fake_workspace(tmp_path, code)
    config = next(p for p in packages if p.distribution == "mbridge-config")
    found = violations(config, sibling_modules(packages))
    if complaint is None:
        assert found == []
    else:
        assert len(found) == 1 and complaint in found[0] and "bad.py" in found[0]
