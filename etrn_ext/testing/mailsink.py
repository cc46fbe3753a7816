"""A submission host for tests: a real SMTP server (aiosmtpd) on loopback that keeps
every message it is given, parsed, so tests can read what notify and the digest sent.
``refuse`` maps recipient addresses to the reply their RCPT TO gets instead of 250."""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from etrn_ext.testing.loopback import free_loopback_address

SINK_PORT = 2587


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        refusal = self.sink.refuse.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.sink.add(tuple(envelope.rcpt_tos), message)
        return "250 2.0.0 OK: queued by the test sink"


class MailSink:
    """Collects (envelope recipients, message) pairs; ``start``/``stop`` like a real host."""

    def __init__(self, address: str | None = None, port: int = SINK_PORT) -> None:
        self.address = address or free_loopback_address((port,))
        self.port = port
        self.received: list[tuple[tuple[str, ...], EmailMessage]] = []
        self.refuse: dict[str, str] = {}
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> MailSink:
        self._controller = Controller(_Handler(self), hostname=self.address, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def add(self, recipients: tuple[str, ...], message: EmailMessage) -> None:
        with self._lock:
            self.received.append((recipients, message))

    def messages(self) -> list[tuple[tuple[str, ...], EmailMessage]]:
        with self._lock:
            return list(self.received)

    def config(self) -> str:
        """The [report] lines that send etrn-ext's mail here."""
        return f'[report]\nsubmission_host = "{self.address}"\nsubmission_port = {self.port}\n'
