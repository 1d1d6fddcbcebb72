"""The architecture is checked, not only drawn (docs/architecture.md): the import-linter contracts
of .importlinter hold, and no module imports an underscore name from another package."""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
# import name -> folder of the clone (demo/ installs as mmrag_demo)
PACKAGES = {"mmrag": "mmrag", "encoders": "encoders", "indexes": "indexes", "mmrag_demo": "demo"}


def _contract_ids() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG, encoding="utf-8")
    prefix = "importlinter:contract:"
    return [s.removeprefix(prefix) for s in parser.sections() if s.startswith(prefix)]


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    found = str(exe) if exe.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is missing: import-linter is in the test extra, `pip install -e '.[test]'`")
    return found


def test_config_lists_the_contracts():
    assert {"layers", "models-and-vectors", "foundations", "no-cycles", "no-cycles-encoders"} <= set(
        _contract_ids()
    )


@pytest.mark.parametrize("contract", _contract_ids())
def test_import_contract_is_kept(contract: str):
    """`lint-imports` as a developer types it, one contract at a time so a failure names its contract."""
    run = subprocess.run(
        [_lint_imports(), "--contract", contract, "--no-cache"],  # finds .importlinter in cwd
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run.stdout + run.stderr
    assert "Contracts: 1 kept, 0 broken." in out, out
    assert run.returncode == 0, out


def _module_of(path: Path) -> tuple[str, str]:
    """(module name, the package it belongs to) of a source file of the clone."""
    for name, folder in PACKAGES.items():
        if path.is_relative_to(ROOT / folder):
            parts = [name, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                return ".".join(parts[:-1]), ".".join(parts[:-1])
            return ".".join(parts), ".".join(parts[:-1])
    raise ValueError(path)


def _package_of(module: str) -> str:
    """A package is its own package; a plain module belongs to its parent."""
    root, *rest = module.split(".")
    folder = ROOT.joinpath(PACKAGES[root], *rest)
    return module if (folder / "__init__.py").is_file() else module.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports_across_packages() -> list[str]:
    """`from X import _name` where X lies in another package than the importing module."""
    found = []
    for folder in PACKAGES.values():
        for path in sorted((ROOT / folder).rglob("*.py")):
            module, package = _module_of(path)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if not isinstance(node, ast.ImportFrom):
                    continue
                source = _absolute(node, package)
                if source.split(".")[0] not in PACKAGES or _package_of(source) == package:
                    continue
                found.extend(
                    f"{path.relative_to(ROOT)}:{node.lineno}: {module} imports {source}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                )
    return found


def test_no_module_imports_another_packages_underscore_name():
    assert private_imports_across_packages() == []


def test_the_scan_sees_a_private_import(tmp_path, monkeypatch):
    """The scan itself: a planted cross-package `_name` import is reported, a same-package one is not."""
    for pkg in ("a", "a/b", "a/c"):
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "a/b/x.py").write_text("def _hidden(): ...\n")
    (tmp_path / "a/b/y.py").write_text("from .x import _hidden\n")
    (tmp_path / "a/c/z.py").write_text("from ..b.x import _hidden, public\nfrom a.b import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", {"a": "a"})
    assert private_imports_across_packages() == ["a/c/z.py:1: a.c.z imports a.b.x._hidden"]
