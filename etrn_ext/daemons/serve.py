"""What every etrn-ext daemon shares: listening sockets (systemd socket activation
included), start-up, and the one fail-open guard.

A daemon's own module only decodes its protocol, calls the service layer and encodes
the answer; everything about processes and sockets is here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, NoReturn, Protocol, TypeVar, cast

from etrn_ext.config import Settings, load_settings
from etrn_ext.core.errors import ConfigError, EtrnExtError
from etrn_ext.index.writer import BatchWriter
from etrn_ext.log import setup_logging
from etrn_ext.service.context import Context
from etrn_ext.wire.errors import ProtocolError

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START: Final = 3
READ_CHUNK: Final = 65536
DRAIN_SECONDS: Final = 5.0
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


def exit_on_startup_error(program: str, error: EtrnExtError | OSError) -> NoReturn:
    log.error("cannot start: %s", error)
    print(f"{program}: cannot start: {error}", file=sys.stderr)
    sys.exit(EX_UNAVAILABLE)


@contextlib.contextmanager
def daemon_context(program: str, description: str, argv: list[str] | None) -> Iterator[Daemon]:
    """Parse the options, load the settings, open the index and start the batched writer;
    on leaving, commit pending writes and close the index. Start-up failures exit 69/78."""
    options = daemon_arguments(program, description).parse_args(argv)
    settings = start(program, options)
    ctx = Context(settings, actor=program)
    try:
        writer = BatchWriter(
            ctx.store,
            max_rows=settings.index.batch_max_rows,
            queue_limit=settings.index.writer_queue_limit,
            max_delay=settings.index.batch_max_delay_seconds,
        ).start()
    except EtrnExtError as exc:
        exit_on_startup_error(program, exc)
    try:
        yield Daemon(program, options.config, ctx, writer)
    finally:
        writer.close(timeout=DRAIN_SECONDS * 6)
        log.info("stopped; index writer: %s", writer.stats)
        ctx.close()


@dataclass(frozen=True, slots=True)
class Daemon:
    """What a daemon's main works with."""

    program: str
    config_path: str | None
    ctx: Context
    writer: BatchWriter

    @property
    def settings(self) -> Settings:
        return self.ctx.settings


RequestT_co = TypeVar("RequestT_co", covariant=True)
RequestT = TypeVar("RequestT")


class Decoder(Protocol[RequestT_co]):
    """What a protocol codec offers the server: bytes in, complete requests out."""

    @property
    def mid_block(self) -> bool: ...

    def feed(self, data: bytes) -> None: ...

    def requests(self) -> Iterator[RequestT_co]: ...


class RequestServer(Generic[RequestT]):
    """Many requests per connection, answered in order; for policyd and the socketmap.

    SIGTERM stops accepting, lets requests in progress finish (at most DRAIN_SECONDS) and
    closes idle connections at once (MTAs keep them open); SIGHUP calls ``reload`` in a
    thread; ``periodic`` runs in a thread every ``period`` seconds, and connections idle
    for longer than ``idle_timeout()`` are closed then.
    """

    def __init__(
        self,
        *,
        name: str,
        make_decoder: Callable[[], Decoder[RequestT]],
        answer: Callable[[RequestT], Awaitable[bytes]],
        idle_timeout: Callable[[], float],
        periodic: Callable[[], None],
        period: float,
        reload: Callable[[], None],
    ) -> None:
        self.name = name
        self.make_decoder = make_decoder
        self.answer = answer
        self.idle_timeout = idle_timeout
        self.periodic = periodic
        self.period = period
        self.reload = reload
        self.connections: dict[asyncio.Task[None], float] = {}  # task -> last activity
        self.busy: set[asyncio.Task[None]] = set()  # answering a request right now
        self.idle = asyncio.Event()  # set while no connection is answering a request
        self.idle.set()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task())
        loop = asyncio.get_running_loop()
        self.connections[task] = loop.time()
        decoder = self.make_decoder()
        try:
            while data := await reader.read(READ_CHUNK):
                self.connections[task] = loop.time()
                self._set_busy(task, busy=True)
                decoder.feed(data)
                for request in decoder.requests():
                    writer.write(await self.answer(request))
                await writer.drain()
                self._set_busy(task, busy=False)
            if decoder.mid_block:
                log.warning("%s client closed the connection in the middle of a request", self.name)
        except ProtocolError as exc:
            log.error("%s client broke the protocol (%s); closing the connection", self.name, exc)
        except (ConnectionError, asyncio.CancelledError):
            pass  # cancelled: closed for idleness or at shutdown, which is no error
        finally:
            self.connections.pop(task, None)
            self._set_busy(task, busy=False)
            writer.close()

    def _set_busy(self, task: asyncio.Task[None], *, busy: bool) -> None:
        if busy:
            self.busy.add(task)
            self.idle.clear()
        else:
            self.busy.discard(task)
            if not self.busy:
                self.idle.set()

    async def _periodically(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.period)
            await asyncio.to_thread(guarded, self.periodic, None, "refresh from the index")
            horizon = loop.time() - self.idle_timeout()
            for task, last_activity in list(self.connections.items()):
                if last_activity < horizon and task not in self.busy:
                    task.cancel()

    async def serve(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        loop.add_signal_handler(signal.SIGINT, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, self.reload))
        listeners = []
        for sock in sockets:
            if sock.family == socket.AF_UNIX:
                listeners.append(await asyncio.start_unix_server(self.connection, sock=sock))
            else:
                listeners.append(await asyncio.start_server(self.connection, sock=sock))
        refresher = asyncio.create_task(self._periodically())
        log.info("ready: %d listening socket(s)", len(listeners))
        await stopping.wait()
        log.info("stopping: answering requests in flight")
        for listener in listeners:
            listener.close()
        refresher.cancel()
        for task in set(self.connections) - self.busy:
            task.cancel()
        # Answer what is being answered, but do not wait for the connections to end:
        # the MTA keeps them open.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), DRAIN_SECONDS)
        for task in list(self.connections):
            task.cancel()


def reloader(config_path: str | None, apply: Callable[[Settings], None]) -> Callable[[], None]:
    """SIGHUP: new settings for new requests; a bad file is logged and the old one kept."""

    def reload() -> None:
        try:
            settings = load_settings(config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        guarded(lambda: apply(settings), None, "reload")
        log.info("configuration reloaded")

    return reload
