"""A fake intermittent site: a real SMTP server (aiosmtpd) that records what it receives.

Recipients whose local part starts with ``bad`` are refused with 550 and ``temp``
with 450, so tests can produce bounces and deferrals at will. The site can go
offline and come back (``stop``/``start``) like a site on a flaky link.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller

SITE_PORT = 2526


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as the site got it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    headers: dict[str, str]
    peer: str


class _Handler:
    def __init__(self, site: FakeSite) -> None:
        self.site = site

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        local = address.split("@", 1)[0].lower()
        if local.startswith("bad"):
            return f"550 5.1.1 <{address}>: no such user here"
        if local.startswith("temp"):
            return f"450 4.2.1 <{address}>: mailbox temporarily unavailable"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.compat32
        )
        self.site.record(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                headers={key: str(value) for key, value in parsed.items()},
                peer=session.peer[0],
            )
        )
        return "250 2.0.0 OK: accepted by the site"


class FakeSite:
    """The site's own mail server on ``address``:``port``."""

    def __init__(self, address: str, port: int = SITE_PORT) -> None:
        self.address = address
        self.port = port
        self.messages: list[ReceivedMessage] = []
        self._lock = threading.Condition()
        self._controller: Controller | None = None

    def start(self) -> FakeSite:
        if self._controller is None:
            self._controller = Controller(
                _Handler(self),
                hostname=self.address,
                port=self.port,
                server_hostname="mx.site.test",
            )
            self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def record(self, message: ReceivedMessage) -> None:
        with self._lock:
            self.messages.append(message)
            self._lock.notify_all()

    def recipients(self) -> list[str]:
        with self._lock:
            return [rcpt for message in self.messages for rcpt in message.rcpt_tos]

    def wait_for_recipients(self, count: int, timeout: float) -> list[str]:
        """Block until at least ``count`` recipients arrived (or ``timeout``); returns them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                received = [rcpt for message in self.messages for rcpt in message.rcpt_tos]
                remaining = deadline - time.monotonic()
                if len(received) >= count or remaining <= 0:
                    return received
                self._lock.wait(remaining)
