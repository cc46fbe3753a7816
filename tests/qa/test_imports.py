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

# The core decides; it never touches the outside world, the clock or chance. It may
# import only itself and the standard library less these modules (I/O, processes,
# threads, the clock, randomness, global state of the process).
CORE_FORBIDDEN_STDLIB = {
    "_thread",
    "asyncio",
    "atexit",
    "builtins",  # builtins.open would get past the name check below
    "bz2",
    "concurrent",
    "ctypes",
    "dbm",
    "fcntl",
    "filecmp",
    "fileinput",
    "ftplib",
    "getpass",
    "glob",
    "grp",
    "gzip",
    "http",
    "imaplib",
    "importlib",
    "io",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "mailbox",
    "mimetypes",
    "mmap",
    "multiprocessing",
    "netrc",
    "os",
    "pathlib",
    "pdb",
    "platform",
    "poplib",
    "pty",
    "pwd",
    "queue",
    "random",
    "resource",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "subprocess",
    "sys",
    "sysconfig",
    "tarfile",
    "tempfile",
    "termios",
    "threading",
    "time",
    "tty",
    "urllib",
    "uuid",
    "webbrowser",
    "wsgiref",
    "xmlrpc",
    "zipfile",
}
CORE_ALLOWED_STDLIB = frozenset(sys.stdlib_module_names) - CORE_FORBIDDEN_STDLIB
# Builtins that read or write the terminal or files, or run text as code.
CORE_FORBIDDEN_BUILTINS = {"open", "input", "print", "breakpoint", "eval", "exec", "__import__"}
# Reading the clock: the core is given ``now`` instead.
CORE_CLOCK_READS = {"now", "utcnow", "today"}
SUBPROCESS_ALLOWED = {PACKAGE / "mta" / "run.py"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(PROJECT).with_suffix("").parts[:-1])


def _imported_modules(tree: ast.Module, package: str) -> set[str]:
    """Every module a module of ``package`` imports, dotted and absolute."""
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            modules.add(".".join(part for part in (base, node.module) if part))
    return modules


def _imports(path: Path) -> set[str]:
    return {module.split(".")[0] for module in _imported_modules(_tree(path), _package_of(path))}


def _core_may_import(module: str) -> bool:
    if module == "etrn_ext.core" or module.startswith("etrn_ext.core."):
        return True
    return module.split(".", maxsplit=1)[0] in CORE_ALLOWED_STDLIB


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _io_and_clock_uses(tree: ast.Module) -> list[str]:
    """Uses of the I/O builtins, and calls that read the clock, as 'line: what'."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in CORE_FORBIDDEN_BUILTINS:
            found.append(f"{node.lineno}: {node.id}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            called = _dotted(node.func)
            owner = called.rpartition(".")[0]
            reads_date = owner.endswith(("date", "datetime")) and node.func.attr in CORE_CLOCK_READS
            if reads_date or owner == "time":
                found.append(f"{node.lineno}: {called}()")
    return found


def _modules(*parts: str) -> list[Path]:
    return sorted((PACKAGE.joinpath(*parts)).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_imports_only_itself_and_pure_stdlib(path: Path) -> None:
    imported = _imported_modules(_tree(path), _package_of(path))
    assert sorted(module for module in imported if not _core_may_import(module)) == []


@pytest.mark.parametrize("path", _modules("core"), ids=lambda p: p.name)
def test_core_does_no_io_and_reads_no_clock(path: Path) -> None:
    assert _io_and_clock_uses(_tree(path)) == []


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        pytest.param("import re", True, id="re"),
        pytest.param("from etrn_ext.core.names import parse_domain", True, id="core"),
        pytest.param("from . import names", True, id="relative-core"),
        pytest.param("import random", False, id="random"),
        pytest.param("import sys", False, id="sys"),
        pytest.param("import logging.handlers", False, id="logging-handlers"),
        pytest.param("from etrn_ext.config import Settings", False, id="config"),
        pytest.param("from ..index import store", False, id="relative-outside-core"),
        pytest.param("import sqlalchemy", False, id="listed-third-party"),
        pytest.param("import yaml", False, id="unlisted-third-party"),
    ],
)
def test_the_core_allowlist_sees(source: str, allowed: bool) -> None:
    [module] = _imported_modules(ast.parse(source), "etrn_ext.core")
    assert _core_may_import(module) is allowed


@pytest.mark.parametrize(
    ("source", "found"),
    [
        pytest.param("open('/etc/passwd')", ["1: open"], id="open"),
        pytest.param("print('x')", ["1: print"], id="print"),
        pytest.param("read = input", ["1: input"], id="input-passed-on"),
        pytest.param("datetime.now(UTC)", ["1: datetime.now()"], id="datetime-now"),
        pytest.param("datetime.datetime.utcnow()", ["1: datetime.datetime.utcnow()"], id="utcnow"),
        pytest.param("date.today()", ["1: date.today()"], id="date-today"),
        pytest.param("time.time()", ["1: time.time()"], id="time-time"),
        pytest.param("datetime.fromtimestamp(now, UTC)", [], id="given-time"),
    ],
)
def test_the_io_check_sees(source: str, found: list[str]) -> None:
    assert _io_and_clock_uses(ast.parse(source)) == found


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
