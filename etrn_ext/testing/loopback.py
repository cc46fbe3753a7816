"""Loopback addresses for private servers, so that tests can run side by side.

Linux routes all of 127.0.0.0/8 to ``lo``; each server gets its own address and so
can keep the standard port. Addresses are picked at random away from 127.0.0.x and
checked by binding the ports the caller needs.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Sequence


def _can_bind(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def free_loopback_address(ports: Sequence[int] = (25,), *, attempts: int = 50) -> str:
    """A 127.a.b.c address on which all ``ports`` are free right now."""
    chooser = random.SystemRandom()
    for _ in range(attempts):
        address = (
            f"127.{chooser.randint(16, 250)}.{chooser.randint(0, 255)}.{chooser.randint(2, 254)}"
        )
        if all(_can_bind(address, port) for port in ports):
            return address
    raise RuntimeError(f"no free loopback address for ports {list(ports)} after {attempts} tries")


def free_port(address: str) -> int:
    """A TCP port free on ``address`` right now (for ``::1``, which is one address only)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
    return port


def wait_for_port(address: str, port: int, *, timeout: float, banner: bytes = b"") -> None:
    """Poll until a TCP server accepts (and, if given, greets with ``banner``); never just sleep."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1.0) as connection:
                if not banner or connection.recv(512).startswith(banner):
                    return
        except OSError as exc:
            last_error = exc
        time.sleep(0.05)
    raise TimeoutError(f"{address}:{port} not ready after {timeout}s ({last_error})")
