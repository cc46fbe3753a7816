"""What every etrn-ext daemon shares: listening sockets (systemd socket activation
included), start-up, and the one fail-open guard.

A daemon's own module only decodes its protocol, calls the service layer and encodes
the answer; everything about processes and sockets is here.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from etrn_ext.config import Settings, load_settings
from etrn_ext.core.errors import ConfigError, EtrnExtError
from etrn_ext.log import setup_logging

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START: Final = 3
EX_CONFIG: Final = 78
EX_UNAVAILABLE: Final = 69

T = TypeVar("T")


def guarded(action: Callable[[], T], fallback: T, what: str) -> T:
    """Run ``action``; on any error log one line (traceback at debug) and return ``fallback``.

    This is the one place where a daemon fails open: a bug or an unreachable index must
    never make the MTA refuse or delay mail.
    """
    try:
        return action()
    except Exception as exc:  # the one catch-all of the daemons
        log.error("%s failed, answering %s: %s: %s", what, fallback, type(exc).__name__, exc)
        log.debug("traceback of the failure above", exc_info=True)
        return fallback


def systemd_sockets() -> list[socket.socket]:
    """Sockets passed by systemd socket activation (LISTEN_FDS), if any are meant for us."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0"))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return [socket.socket(fileno=SD_LISTEN_FDS_START + index) for index in range(count)]


def unix_socket(path: str, mode: str) -> socket.socket:
    """Bind a unix stream socket, replacing a stale one left by a crash."""
    target = Path(path)
    if target.exists() and stat.S_ISSOCK(target.stat().st_mode):
        target.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    target.chmod(int(mode, 8))
    listener.listen(128)
    return listener


def tcp_socket(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    return socket.create_server((host.strip("[]"), int(port)), backlog=128)


def listening_sockets(unix_path: str, tcp_address: str, mode: str) -> list[socket.socket]:
    """systemd's sockets when activated, else the configured unix and TCP sockets."""
    sockets = systemd_sockets()
    if sockets:
        return sockets
    if unix_path:
        sockets.append(unix_socket(unix_path, mode))
    if tcp_address:
        sockets.append(tcp_socket(tcp_address))
    return sockets


def daemon_arguments(program: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=program, description=description)
    parser.add_argument("-c", "--config", metavar="FILE", help="configuration file")
    parser.add_argument("--stderr", action="store_true", help="log to standard error, not syslog")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    return parser


def start(program: str, options: argparse.Namespace) -> Settings:
    """Load the settings and set up logging; a bad configuration exits with EX_CONFIG (78)."""
    try:
        settings = load_settings(options.config)
    except ConfigError as exc:
        print(f"{program}: configuration error: {exc}", file=sys.stderr)
        sys.exit(EX_CONFIG)
    setup_logging(
        program,
        settings.log,
        to_syslog=not options.stderr,
        level="debug" if options.verbose else None,
    )
    return settings


def exit_on_startup_error(program: str, error: EtrnExtError | OSError) -> None:
    log.error("cannot start: %s", error)
    print(f"{program}: cannot start: {error}", file=sys.stderr)
    sys.exit(EX_UNAVAILABLE)
