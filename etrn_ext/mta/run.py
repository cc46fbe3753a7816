"""The one place that starts subprocesses: argument lists only, never a shell.

Callers build argv from validated values (``core.names``); this module adds the
timeout, captures output and turns every failure into ``MtaCommandError``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from etrn_ext.core.errors import MtaCommandError


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a finished command said."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check_returncode(self) -> None:
        """Raise for a non-zero exit, for callers that first looked at the exit status."""
        if self.returncode != 0:
            raise _failure(self.argv, self.returncode, self.stderr)


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
    result = CommandResult(tuple(argv), process.returncode, stdout, stderr)
    if check:
        result.check_returncode()
    return result


class LineStream:
    """A command started now whose output is read line by line later, as it is written.

    The output goes to an unlinked temporary file rather than a pipe, so the command
    runs at full speed while the caller is still busy (opening the index, say) and
    nothing is held in memory: the reader follows the file as it grows. The process is
    killed after ``timeout``; a failure is raised when the output has been read.
    """

    POLL_SECONDS: Final = 0.005
    CHUNK: Final = 1 << 16

    def __init__(self, argv: Sequence[str], *, timeout: float) -> None:
        self.argv = tuple(argv)
        # The command writes to one open file and we read through another, so that
        # the two file offsets are independent; the name is unlinked at once. All of
        # these are owned by this object and closed in close(), however reading ends.
        descriptor, path = tempfile.mkstemp(prefix="etrn-output-")
        try:
            self._reader = open(path, "rb")  # noqa: SIM115
        finally:
            os.unlink(path)
        self._output = os.fdopen(descriptor, "wb")
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._process = _spawn(argv, stdout=self._output, stderr=self._errors)
        except MtaCommandError:
            self._close_files()
            raise
        self._killed = threading.Event()
        self._timer = threading.Timer(timeout, self._kill)
        self._timer.daemon = True
        self._timer.start()
        self._timeout = timeout
        self._stderr = ""

    def _kill(self) -> None:
        self._killed.set()
        self._process.kill()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            chunk = self._reader.read(self.CHUNK)
            if chunk:
                yield chunk
            elif self._process.poll() is not None:
                rest = self._reader.read()
                if rest:
                    yield rest
                return
            else:
                time.sleep(self.POLL_SECONDS)

    def __iter__(self) -> Iterator[str]:
        try:
            pending = b""
            for chunk in self._chunks():
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
        finally:
            self.close()
        if self._killed.is_set():
            raise MtaCommandError(self.argv, f"timed out after {self._timeout:g}s")
        if self._process.returncode != 0:
            raise _failure(self.argv, self._process.returncode, self._stderr)

    def close(self) -> None:
        """Stop the command if it still runs, keep its stderr, release its files."""
        if self._output.closed:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._timer.cancel()
        self._errors.seek(0)
        self._stderr = self._errors.read().decode("utf-8", "replace")
        self._close_files()

    def _close_files(self) -> None:
        for file in (self._errors, self._output, self._reader):
            file.close()


def is_executable(path: str) -> bool:
    """True when ``path`` is a file this process may run."""
    return os.path.isfile(path) and os.access(path, os.X_OK)
