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
    RequestServer,
    daemon_context,
    exit_on_startup_error,
    guarded,
    listening_sockets,
    reloader,
)
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
    description = "Postfix policy daemon for intermittent domains"
    with daemon_context(PROGRAM, description, argv) as daemon:
        policyd = daemon.settings.policyd
        try:
            service = PolicyService(daemon.ctx, daemon.writer)
            sockets = listening_sockets(policyd.listen, policyd.listen_tcp, policyd.socket_mode)
        except (EtrnExtError, OSError) as exc:
            exit_on_startup_error(PROGRAM, exc)
        if not sockets:
            exit_on_startup_error(PROGRAM, OSError("nothing to listen on: set policyd.listen"))
        try:
            asyncio.run(policy_server(service, daemon.config_path).serve(sockets))
        finally:
            service.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
