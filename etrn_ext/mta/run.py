"""The one place that starts subprocesses: argument lists only, never a shell.

Callers build argv from validated values (``core.names``); this module adds the
timeout, captures output and turns every failure into ``MtaCommandError``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, cast

from etrn_ext.core.errors import MtaCommandError


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a finished command said."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def _failure(argv: Sequence[str], returncode: int, stderr: str) -> MtaCommandError:
    lines = stderr.strip().splitlines()
    return MtaCommandError(
        argv, lines[-1] if lines else "failed", returncode=returncode, stderr=stderr
    )


def _spawn(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, text=True, **kwargs)
    except FileNotFoundError as exc:
        raise MtaCommandError(argv, "command not found") from exc
    except PermissionError as exc:
        raise MtaCommandError(argv, "permission denied") from exc


def run_command(argv: Sequence[str], *, timeout: float, check: bool = True) -> CommandResult:
    """Run ``argv`` without a shell; with ``check`` a non-zero exit raises ``MtaCommandError``."""
    process = _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise MtaCommandError(argv, f"timed out after {timeout:g}s") from None
    if check and process.returncode != 0:
        raise _failure(argv, process.returncode, stderr)
    return CommandResult(tuple(argv), process.returncode, stdout, stderr)


@contextmanager
def stream_lines(argv: Sequence[str], *, timeout: float) -> Iterator[Iterator[str]]:
    """Yield the command's stdout line by line without holding it all in memory.

    The process is killed when it runs longer than ``timeout``; on leaving the block a
    non-zero exit (or the kill) raises ``MtaCommandError`` with its stderr.
    """
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as errors:
        process = _spawn(argv, stdout=subprocess.PIPE, stderr=errors)
        stdout = cast(IO[str], process.stdout)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            process.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            yield iter(stdout)
        finally:
            stdout.close()
            process.wait()
            timer.cancel()
        if killed.is_set():
            raise MtaCommandError(argv, f"timed out after {timeout:g}s")
        # -SIGPIPE: the caller stopped reading early, which is its right.
        if process.returncode not in (0, -signal.SIGPIPE):
            errors.seek(0)
            raise _failure(argv, process.returncode, errors.read())


def is_executable(path: str) -> bool:
    """True when ``path`` is a file this process may run."""
    return os.path.isfile(path) and os.access(path, os.X_OK)
