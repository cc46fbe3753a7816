"""etrn-socketmap: Sendmail's check_etrn asks it, over the socketmap protocol, about every ETRN.

Lookups are answered from a worker thread (a decision may need DNS); any failure, and
a decision not made within ``[socketmap] answer_timeout_seconds``, answers PASS, so ETRN
works as plain Sendmail's (fail open). That must happen well inside the K line's ``-d``
timeout: past it Sendmail answers the ETRN ``451 ... read timeout`` itself, and the
ruleset's ``<TEMP>`` branch never sees it. SIGTERM and SIGHUP behave as for etrn-policyd.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Final

from etrn_ext.config import Settings, SocketmapSettings
from etrn_ext.core.errors import EtrnExtError
from etrn_ext.core.sendmail_setup import PASS
from etrn_ext.daemons.serve import (
    RequestServer,
    daemon_context,
    exit_on_startup_error,
    guarded,
    listening_sockets,
    reloader,
)
from etrn_ext.service.etrn import EtrnHook
from etrn_ext.service.recording import HeldMailRecorder
from etrn_ext.service.socketmap import answer_lookup
from etrn_ext.wire.socketmap import Lookup, NetstringDecoder, found, not_found

PROGRAM: Final = "etrn-socketmap"
# A decision made right at its deadline still needs this to reach the reply; past it,
# the reply is PASS without the decision.
REPLY_GRACE_SECONDS: Final = 0.25

log = logging.getLogger(__name__)


def socketmap_server(
    hook: EtrnHook, recorder: HeldMailRecorder, config_path: str | None
) -> RequestServer[Lookup]:
    def settings() -> SocketmapSettings:  # read anew: SIGHUP replaces them
        return hook.ctx.settings.socketmap

    def handle(lookup: Lookup, deadline: float) -> bytes:
        fallback: str | None = PASS  # fail open: Sendmail's own ETRN
        value = guarded(
            lambda: answer_lookup(hook, lookup, settings().map_name, deadline),
            fallback,
            "ETRN lookup",
        )
        return not_found() if value is None else found(value)

    async def answer(lookup: Lookup) -> bytes:
        seconds = settings().answer_timeout_seconds
        decision = asyncio.to_thread(handle, lookup, time.monotonic() + seconds)
        try:
            return await asyncio.wait_for(decision, seconds + REPLY_GRACE_SECONDS)
        except TimeoutError:
            log.warning(
                "ETRN lookup %r not decided within %gs: answered %s", lookup.key, seconds, PASS
            )
            return found(PASS)

    def reload(new: Settings) -> None:
        hook.ctx.reload(new)
        hook.configure(new.etrn)
        recorder.refresh_registry()

    return RequestServer(
        name="socketmap",
        make_decoder=NetstringDecoder,
        answer=answer,
        idle_timeout=lambda: settings().idle_timeout_seconds,
        periodic=recorder.refresh_registry,
        period=settings().registry_refresh_seconds,
        reload=reloader(config_path, reload),
    )


def main(argv: list[str] | None = None) -> None:
    with daemon_context(PROGRAM, "Sendmail check_etrn hook (socketmap)", argv) as daemon:
        socketmap = daemon.settings.socketmap
        try:
            recorder = HeldMailRecorder(daemon.ctx, daemon.writer)
            recorder.refresh_registry()
            hook = EtrnHook(daemon.ctx, daemon.writer, lambda: recorder.registry)
            sockets = listening_sockets(
                socketmap.listen, socketmap.listen_tcp, socketmap.socket_mode
            )
        except (EtrnExtError, OSError) as exc:
            exit_on_startup_error(PROGRAM, exc)
        if not sockets:
            exit_on_startup_error(PROGRAM, OSError("nothing to listen on: set socketmap.listen"))
        try:
            asyncio.run(socketmap_server(hook, recorder, daemon.config_path).serve(sockets))
        finally:
            hook.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
