"""etrn-milter: tags and records held mail from inside Postfix or Sendmail (pymilter).

The MTA is asked only for what is needed: MAIL FROM and RCPT TO without a reply
(``@Milter.noreply``) and END-OF-MESSAGE, where the trace header is added; connect,
HELO, headers and body are switched off (``@Milter.nocallback``, the Base default).
Callbacks never touch the database: rows go to the batched writer, whose thread
Python created (closing SQLite connections in libmilter's threads crashes CPython).
Every callback fails open through ``guarded``; pymilter's own exception policy is
ACCEPT as well.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import ClassVar, Final

import Milter

from etrn_ext.config import MilterSettings
from etrn_ext.core.errors import EtrnExtError
from etrn_ext.core.rules import held_header, storable_text
from etrn_ext.daemons.serve import daemon_context, exit_on_startup_error, guarded
from etrn_ext.service.recording import HeldMailRecorder

PROGRAM: Final = "etrn-milter"

log = logging.getLogger(__name__)


def _address(text: str) -> str:
    """An address as index and header can take it (8-bit bytes arrive as lone surrogates)."""
    return storable_text(text.strip().removeprefix("<").removesuffix(">"))


def _size_parameter(params: tuple[str, ...]) -> int:
    """The SIZE= a client announced (the milter sees no body, so that is what it knows)."""
    for param in params:
        name, _, value = param.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


class EtrnMilter(Milter.Base):  # type: ignore[misc]
    """One instance per SMTP connection; the per-message state is reset at MAIL FROM."""

    recorder: ClassVar[HeldMailRecorder]
    settings: ClassVar[MilterSettings]

    def __init__(self) -> None:
        self.sender = ""
        self.size = 0
        self.recipients: list[tuple[str, str]] = []

    @Milter.noreply  # type: ignore[untyped-decorator]
    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.sender = _address(mailfrom)
        self.size = _size_parameter(params)
        self.recipients = []
        return Milter.CONTINUE  # type: ignore[no-any-return]

    @Milter.noreply  # type: ignore[untyped-decorator]
    def envrcpt(self, to: str, *params: str) -> int:
        def note() -> None:
            address = _address(to)
            domain = self.recorder.held_domain(address, self.getsymval("{rcpt_mailer}") or "")
            if domain is not None:
                self.recipients.append((address, domain))

        guarded(note, None, "RCPT callback")
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def eom(self) -> int:
        if self.recipients:
            guarded(self._tag_and_record, None, "END-OF-MESSAGE callback")
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def _tag_and_record(self) -> None:
        queue_id = self.getsymval("i") or ""
        if self.settings.add_header:
            domains = [domain for _address, domain in self.recipients]
            value = held_header(domains, self.recorder.ctx.node, self.recorder.clock())
            self.addheader(self.settings.header_name, value)
        self.recorder.record(queue_id, self.sender, self.size, self.recipients)


def refresh_forever(recorder: HeldMailRecorder, interval: float, stop: threading.Event) -> None:
    """Re-read the registry in a Python thread (never in libmilter's)."""
    while not stop.wait(interval):
        guarded(recorder.refresh_registry, None, "registry refresh")


def main(argv: list[str] | None = None) -> None:
    description = "Milter that tags and records mail held for ETRN"
    with daemon_context(PROGRAM, description, argv) as daemon:
        milter = daemon.settings.milter
        mailers = [name for name in milter.holding_mailers.replace(",", " ").split() if name]
        recorder = HeldMailRecorder(daemon.ctx, daemon.writer, holding_mailers=mailers)
        try:
            recorder.refresh_registry()
        except EtrnExtError as exc:
            exit_on_startup_error(PROGRAM, exc)
        EtrnMilter.recorder = recorder
        EtrnMilter.settings = milter
        stop = threading.Event()
        threading.Thread(
            target=refresh_forever,
            args=(recorder, milter.registry_refresh_seconds, stop),
            name="etrn-registry",
            daemon=True,
        ).start()
        Milter.factory = EtrnMilter
        Milter.set_flags(Milter.ADDHDRS if milter.add_header else 0)
        Milter.set_exception_policy(Milter.ACCEPT)
        os.umask(0o777 & ~int(milter.socket_mode, 8))  # libmilter creates the socket
        log.info("ready on %s", milter.listen)
        try:
            Milter.runmilter(PROGRAM, milter.listen, int(milter.timeout_seconds))
        except Milter.milter.error as exc:
            exit_on_startup_error(PROGRAM, OSError(f"libmilter: {exc}"))
        finally:
            stop.set()


if __name__ == "__main__":
    main()
