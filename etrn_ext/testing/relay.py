"""A fake relay for the site's ETRN client: a real SMTP server (aiosmtpd) with a scripted ETRN.

Each ETRN argument gets the replies scripted for it in turn (the last one repeats), so
a test can have a relay answer 458 twice and then 250. A reply can be ``Slow`` to make
the client time out. The relay can offer STARTTLS (with a certificate from a test CA),
answer it with a scripted reply instead (a 454, or a 220 and a dropped connection),
demand AUTH before ETRN, or not advertise ETRN at all. It records what it was asked.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax

DEFAULT_REPLY = "250 2.0.0 Queuing started"


@dataclass(frozen=True)
class Slow:
    """A reply sent only after ``seconds``: longer than the client waits, it is a timeout."""

    seconds: float
    reply: str = DEFAULT_REPLY


Reply = str | Slow


@dataclass(frozen=True)
class EtrnSeen:
    """One ETRN as the relay received it: the argument, whether TLS was on, who had logged in."""

    argument: str
    tls: bool
    login: str | None
    helo: str | None


@dataclass
class _Script:
    replies: dict[str, list[Reply]] = field(default_factory=dict)
    seen: list[EtrnSeen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, argument: str) -> Reply:
        with self.lock:
            queue = self.replies.get(argument) or self.replies.get("*") or [DEFAULT_REPLY]
            return queue.pop(0) if len(queue) > 1 else queue[0]


class _EtrnSMTP(SMTP):
    """aiosmtpd's SMTP with the ETRN verb, the way Mailman's fake MTA adds STAT."""

    def __init__(
        self, handler: Any, *, script: _Script, starttls_reply: str | None, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.script = script
        self.starttls_reply = starttls_reply

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.starttls_reply is None:
            await super().smtp_STARTTLS(arg)
            return
        await self.push(self.starttls_reply)
        if self.starttls_reply.startswith("220") and self.transport is not None:
            self.transport.close()  # the handshake never happens: a link that dropped

    @syntax("ETRN node")
    async def smtp_ETRN(self, arg: str) -> None:
        session = self.session
        if await self.check_helo_needed("EHLO") or session is None:
            return
        if self.event_handler.credentials and not session.authenticated:
            await self.push("530 5.7.0 Authentication required")
            return
        if not arg:
            await self.push("501 Syntax: ETRN node")
            return
        auth = session.auth_data
        self.script.seen.append(
            EtrnSeen(
                arg,
                tls=self._tls_protocol is not None,
                login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                helo=session.host_name,
            )
        )
        reply = self.script.next_reply(arg)
        if isinstance(reply, Slow):
            await asyncio.sleep(reply.seconds)
            reply = reply.reply
        await self.push(reply)


class _Handler:
    def __init__(self, advertise_etrn: bool, credentials: Mapping[str, str]) -> None:
        self.advertise_etrn = advertise_etrn
        self.credentials = dict(credentials)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.advertise_etrn:
            return [*responses[:-1], "250-ETRN", responses[-1]]
        return responses

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self.credentials.get(
            auth_data.login.decode()
        ) == auth_data.password.decode("utf-8", "replace")
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class EtrnRelay:
    """A relay on ``address``:``port`` whose ETRN answers follow ``replies``.

    ``replies`` maps an ETRN argument (or ``*``) to the replies it gets in turn.
    ``credentials`` (user -> password) makes the relay demand AUTH before ETRN; AUTH is
    offered only inside TLS, as on real relays. ``starttls_reply`` answers STARTTLS
    instead of starting TLS.
    """

    def __init__(
        self,
        address: str,
        port: int = 2525,
        *,
        replies: Mapping[str, Sequence[Reply]] | None = None,
        tls_context: ssl.SSLContext | None = None,
        credentials: Mapping[str, str] | None = None,
        advertise_etrn: bool = True,
        name: str = "relay.test",
        starttls_reply: str | None = None,
    ) -> None:
        self.address = address
        self.port = port
        self.script = _Script({key: list(value) for key, value in (replies or {}).items()})
        self.handler = _Handler(advertise_etrn, credentials or {})
        self.tls_context = tls_context
        self.name = name
        self.starttls_reply = starttls_reply
        self._controller: Controller | None = None

    def start(self) -> EtrnRelay:
        script, starttls_reply = self.script, self.starttls_reply
        smtp_options: dict[str, Any] = {
            "tls_context": self.tls_context,
            "authenticator": self.handler.authenticate,
            "auth_require_tls": True,
        }

        class _Controller(Controller):
            def factory(self) -> SMTP:
                return _EtrnSMTP(
                    self.handler, script=script, starttls_reply=starttls_reply, **self.SMTP_kwargs
                )

        self._controller = _Controller(
            self.handler,
            hostname=self.address,
            port=self.port,
            server_hostname=self.name,
            **smtp_options,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def seen(self) -> list[EtrnSeen]:
        """Every ETRN received, in order."""
        return list(self.script.seen)

    def __enter__(self) -> EtrnRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
