"""Our daemons as real processes for tests and benchmarks: start, wait until they listen, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def with_resolv_conf(resolv_conf: Path) -> list[str]:
    """An argv prefix that runs a program with ``resolv_conf`` as its /etc/resolv.conf (in
    a private mount namespace: root only), so that a test decides where its DNS goes."""
    mount = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", mount, str(resolv_conf)]


class DaemonProcess:
    """``etrn-policyd`` (or another of our programs) run with a config file, logging to a file;
    ``wrapper`` is an argv prefix to run it under (``with_resolv_conf``)."""

    def __init__(
        self, program: str, config: Path, socket_path: Path, log: Path, wrapper: Sequence[str] = ()
    ) -> None:
        self.argv = [
            *wrapper,
            str(Path(sys.executable).with_name(program)),
            "--config",
            str(config),
            "--stderr",
            "-v",
        ]
        self.socket_path = socket_path
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(self.argv, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.argv[0]} exited with {self.process.returncode}:\n{self.log_text()}"
                )
            if self._accepts():
                return self
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.argv[0]} did not listen on {self.socket_path}:\n{self.log_text()}"
        )

    def _accepts(self) -> bool:
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                return False
        return True

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> int | None:
        """SIGTERM (or SIGKILL) and wait; returns the exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.kill(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def reload(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGHUP)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
