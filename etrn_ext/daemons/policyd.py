"""etrn-policyd: the Postfix policy delegation protocol (asyncio) over the policy service.

Many requests per connection; SIGTERM stops accepting, answers what is in flight and
commits pending index writes; SIGHUP reloads the configuration for new requests. ETRN
requests (rare, may need DNS) are answered from a worker thread so that RCPT answers
never wait behind them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Final

from etrn_ext.config import PolicydSettings
from etrn_ext.core.errors import EtrnExtError
from etrn_ext.daemons.serve import (
    DRAIN_SECONDS,
    RequestServer,
    daemon_arguments,
    exit_on_startup_error,
    guarded,
    listening_sockets,
    reloader,
    start,
)
from etrn_ext.index.writer import BatchWriter
from etrn_ext.service.context import Context
from etrn_ext.service.policy import PolicyService
from etrn_ext.wire.policy import PolicyDecoder, PolicyRequest, format_action

PROGRAM: Final = "etrn-policyd"

log = logging.getLogger(__name__)


def policy_server(service: PolicyService, config_path: str | None) -> RequestServer[PolicyRequest]:
    """The policy protocol server over ``service``; ETRN (rare, may need DNS) in a thread."""

    def settings() -> PolicydSettings:  # read anew: SIGHUP replaces them
        return service.ctx.settings.policyd

    def handle(request: PolicyRequest) -> bytes:
        action = guarded(
            lambda: service.handle(request),
            settings().on_error,
            f"{request.protocol_state} request",
        )
        return format_action(action)

    async def answer(request: PolicyRequest) -> bytes:
        if request.protocol_state == "ETRN":
            return await asyncio.to_thread(handle, request)
        return handle(request)

    def refresh() -> None:
        service.recorder.refresh_registry()
        service.refresh_usage()

    return RequestServer(
        name="policy",
        make_decoder=PolicyDecoder,
        answer=answer,
        idle_timeout=lambda: settings().idle_timeout_seconds,
        periodic=refresh,
        period=min(settings().registry_refresh_seconds, settings().usage_refresh_seconds),
        reload=reloader(config_path, service.reload),
    )


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
        asyncio.run(policy_server(service, options.config).serve(sockets))
    finally:
        service.close()
        writer.close(timeout=DRAIN_SECONDS * 6)
        log.info("stopped; index writer: %s", writer.stats)
        ctx.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
