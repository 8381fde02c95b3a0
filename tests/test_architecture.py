"""The floors hold: import contracts (import-linter, pyproject.toml), function complexity, packaged defaults.

docs/architecture.md describes the floors; these tests keep the description true.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "accord"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())
FLOORS_TOP_DOWN = ["accord.__main__", "accord.cli", "accord.server", "accord.api", "accord.studies", "accord.training",
                   "accord.config",
                   "accord.augment | accord.features",
                   "accord.data | accord.models | accord.balance | accord.evaluation", "accord.objectives",
                   "accord.core"]


def lint_imports(root: Path, package_parent: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` with the project's contracts on the package found under ``package_parent``."""
    env = {"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin", "HOME": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache", str(ROOT / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_contracts_name_every_floor_in_order() -> None:
    contracts = CONFIG["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")
    assert layers["layers"] == FLOORS_TOP_DOWN
    documented = (ROOT / "docs" / "architecture.md").read_text()
    for floor in ("accord.core", "accord.objectives", "accord.data", "accord.models", "accord.balance",
                  "accord.evaluation", "accord.augment", "accord.features", "accord.config", "accord.training",
                  "accord.studies", "accord.api", "accord.cli", "accord.server"):
        assert f"`{floor}`" in documented, floor  # the map names every floor


def test_import_contracts_hold() -> None:
    res = lint_imports(ROOT, ROOT / "src")
    assert res.returncode == 0 and " 0 broken" in res.stdout, res.stdout[-4000:] + res.stderr[-2000:]


def test_import_contracts_catch_an_upward_arrow(tmp_path: Path) -> None:
    """A copy of the package with five upward imports planted: each breaks the contract that forbids it."""
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy / "accord", ignore=shutil.ignore_patterns("__pycache__"))
    plant = {
        "core/types.py": "import accord.training.trainer  # planted",
        "models/tfn.py": "import accord.balance.cp  # planted",
        "data/safe.py": "import accord.models.base  # planted",
        "cli.py": "import accord.training.trainer  # planted",
        "server.py": "import accord.features.predict  # planted",
    }
    for rel, line in plant.items():
        f = copy / "accord" / rel
        f.write_text(f.read_text() + f"\n{line}\n")
    res = lint_imports(tmp_path, copy)
    assert res.returncode != 0
    out = res.stdout
    for contract in ("The core floor imports nothing of Accord", "Models never import the trainer",
                     "Data knows no model", "The CLI calls only the public API",
                     "The server (accord serve) calls only the public API"):
        assert f"{contract}" in out and out.split(contract, 1)[1].split("\n", 1)[0].strip().endswith("BROKEN"), \
            (contract, out[-3000:])


def test_no_function_is_more_complex_than_20() -> None:
    radon = pytest.importorskip("radon.complexity")

    def functions(blocks: list) -> list:  # type: ignore[type-arg]
        """Every function, method and closure radon measured (a class block carries its methods)."""
        out = []
        for b in blocks:
            out += functions(list(getattr(b, "methods", []))) if hasattr(b, "methods") else [b]
            out += functions(list(getattr(b, "closures", [])))
        return out

    too_complex, seen = [], 0
    for path in sorted(SRC.rglob("*.py")):
        for block in functions(radon.cc_visit(path.read_text())):
            seen += 1
            if block.complexity > 20:
                too_complex.append(f"{path.relative_to(SRC)}:{block.lineno} {block.fullname} {block.complexity}")
    assert seen > 500  # methods and closures are measured, not only top-level functions
    assert not too_complex, too_complex


def test_every_packaged_config_file_is_package_data() -> None:
    globs = CONFIG["tool"]["setuptools"]["package-data"]["accord"]
    files = sorted(p.relative_to(SRC) for p in (SRC / "configs").rglob("*") if p.is_file())
    assert files, "no packaged configs"
    for f in files:
        assert any(f.match(g) for g in globs), f"{f} is not shipped in a wheel (package-data: {globs})"
