"""The layering is enforced, not hoped for: import-linter contracts plus a short AST walk."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "etrn_ext"
PROJECT = PACKAGE.parent

# The core decides; it never touches the outside world or the clock.
CORE_FORBIDDEN = {
    "os",
    "io",
    "pathlib",
    "socket",
    "asyncio",
    "subprocess",
    "smtplib",
    "time",
    "threading",
    "sqlite3",
    "logging",
    "shutil",
    "tempfile",
    "select",
    "selectors",
    "urllib",
    "http",
}
SUBPROCESS_ALLOWED = {PACKAGE / "mta" / "run.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(*parts: str) -> list[Path]:
    return sorted((PACKAGE.joinpath(*parts)).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_does_no_io(path: Path) -> None:
    assert not _imports(path) & CORE_FORBIDDEN


def test_subprocess_only_in_the_one_door() -> None:
    offenders = [
        str(path.relative_to(PROJECT))
        for path in _modules()
        if "subprocess" in _imports(path)
        and path not in SUBPROCESS_ALLOWED
        and "testing" not in path.parts
    ]
    assert offenders == []


def test_no_shell_anywhere() -> None:
    for path in _modules():
        source = path.read_text()
        assert "shell=True" not in source, path
        assert "os.system" not in source, path


def test_import_linter_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a test dependency"
    result = subprocess.run(
        [lint_imports], cwd=PROJECT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
