"""etrn-policyd: the Postfix policy delegation protocol (asyncio) over the policy service.

Many requests per connection; SIGTERM stops accepting, answers what is in flight and
commits pending index writes; SIGHUP reloads the configuration for new requests. ETRN
requests (rare, may need DNS) are answered from a worker thread so that RCPT answers
never wait behind them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from typing import Final, cast

from etrn_ext.config import load_settings
from etrn_ext.core.errors import ConfigError, EtrnExtError
from etrn_ext.daemons.serve import (
    daemon_arguments,
    exit_on_startup_error,
    guarded,
    listening_sockets,
    start,
)
from etrn_ext.index.writer import BatchWriter
from etrn_ext.service.context import Context
from etrn_ext.service.policy import PolicyService
from etrn_ext.wire.policy import PolicyDecoder, PolicyRequest, ProtocolError, format_action

PROGRAM: Final = "etrn-policyd"
READ_CHUNK: Final = 65536
DRAIN_SECONDS: Final = 5.0

log = logging.getLogger(__name__)


class PolicyServer:
    """Accepts connections and answers each request block with one action."""

    def __init__(self, service: PolicyService, config_path: str | None) -> None:
        self.service = service
        self.config_path = config_path
        self.connections: dict[asyncio.Task[None], float] = {}  # task -> last activity
        self.busy: set[asyncio.Task[None]] = set()  # answering a request right now

    def answer(self, request: PolicyRequest) -> str:
        on_error = self.service.ctx.settings.policyd.on_error
        return guarded(
            lambda: self.service.handle(request), on_error, f"{request.protocol_state} request"
        )

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task())
        loop = asyncio.get_running_loop()
        self.connections[task] = loop.time()
        decoder = PolicyDecoder()
        try:
            while data := await reader.read(READ_CHUNK):
                self.connections[task] = loop.time()
                self.busy.add(task)
                decoder.feed(data)
                for request in decoder.requests():
                    if request.protocol_state == "ETRN":
                        action = await asyncio.to_thread(self.answer, request)
                    else:
                        action = self.answer(request)
                    writer.write(format_action(action))
                await writer.drain()
                self.busy.discard(task)
            if decoder.mid_block:
                log.warning("policy client closed the connection in the middle of a request")
        except ProtocolError as exc:
            log.error("policy client broke the protocol (%s); closing the connection", exc)
        except ConnectionError:
            pass
        finally:
            self.connections.pop(task, None)
            self.busy.discard(task)
            writer.close()

    async def refresh_forever(self) -> None:
        """Re-read the index now and then, and close connections idle for too long."""
        settings = self.service.ctx.settings.policyd
        interval = min(settings.registry_refresh_seconds, settings.usage_refresh_seconds)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(guarded, self.refresh, None, "refresh from the index")
            horizon = loop.time() - self.service.ctx.settings.policyd.idle_timeout_seconds
            for task, last_activity in list(self.connections.items()):
                if last_activity < horizon and task not in self.busy:
                    task.cancel()

    def refresh(self) -> None:
        self.service.recorder.refresh_registry()
        self.service.refresh_usage()

    def reload(self) -> None:
        """SIGHUP: new settings for new requests; listening sockets stay as they are."""
        try:
            settings = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        guarded(lambda: self.service.reload(settings), None, "reload")
        log.info("configuration reloaded")


async def serve(server: PolicyServer, sockets: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, server.reload))
    listeners = []
    for sock in sockets:
        if sock.family == socket.AF_UNIX:
            listeners.append(await asyncio.start_unix_server(server.connection, sock=sock))
        else:
            listeners.append(await asyncio.start_server(server.connection, sock=sock))
    refresher = asyncio.create_task(server.refresh_forever())
    log.info("ready: %d listening socket(s)", len(listeners))
    await stopping.wait()
    log.info("stopping: answering requests in flight")
    for listener in listeners:
        listener.close()
    refresher.cancel()
    for task in set(server.connections) - server.busy:  # idle: smtpd just keeps them open
        task.cancel()
    if server.busy:
        await asyncio.wait(list(server.busy), timeout=DRAIN_SECONDS)
    for task in list(server.connections):
        task.cancel()


def main(argv: list[str] | None = None) -> None:
    options = daemon_arguments(
        PROGRAM, "Postfix policy daemon for intermittent domains"
    ).parse_args(argv)
    settings = start(PROGRAM, options)
    ctx = Context(settings, actor=PROGRAM)
    try:
        writer = BatchWriter(
            ctx.store,
            max_rows=settings.index.batch_max_rows,
            queue_limit=settings.index.writer_queue_limit,
            max_delay=settings.index.batch_max_delay_seconds,
        ).start()
        service = PolicyService(ctx, writer)
        sockets = listening_sockets(
            settings.policyd.listen, settings.policyd.listen_tcp, settings.policyd.socket_mode
        )
    except (EtrnExtError, OSError) as exc:
        exit_on_startup_error(PROGRAM, exc)
        return
    if not sockets:
        exit_on_startup_error(
            PROGRAM, OSError("nothing to listen on: set policyd.listen or listen_tcp")
        )
    try:
        asyncio.run(serve(PolicyServer(service, options.config), sockets))
    finally:
        service.close()
        writer.close(timeout=DRAIN_SECONDS * 6)
        log.info("stopped; index writer: %s", writer.stats)
        ctx.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
