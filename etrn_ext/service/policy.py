"""The use cases behind etrn-policyd: quota at RCPT, recording at END-OF-MESSAGE, the ETRN hook.

Replies never wait for the database: the registry and the held-mail totals are read
from the index in the background (``refresh``) and kept in memory, rows and audit
events go to the batched writer, and a targeted flush runs in its own thread.
Postfix's ``instance`` attribute ties a message's RCPT requests (the first of which
has no queue id) to its END-OF-MESSAGE request. Its first field is the smtpd process
id, and an smtpd handles one message at a time: a new instance from the same process
means its previous message ended without END-OF-MESSAGE (a recipient probe, RSET, a
refused DATA), so what that message had put in flight is released at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from etrn_ext.config import Settings
from etrn_ext.core.model import DomainUsage, Event, EventKind
from etrn_ext.core.policy import (
    Verdict,
    over_quota,
)
from etrn_ext.index.writer import BatchWriter
from etrn_ext.net.resolve import CachingResolver
from etrn_ext.service.context import Context
from etrn_ext.service.etrn import EtrnHook, EtrnRequest
from etrn_ext.service.recording import HeldMailRecorder
from etrn_ext.wire.policy import PolicyRequest

log = logging.getLogger(__name__)

DUNNO: Final = "DUNNO"
OK: Final = "OK"
FORGET_UNFINISHED_SECONDS: Final = 3600.0
WRITER_FLUSH_SECONDS: Final = 5.0
TLS_ATTRIBUTES: Final = (
    "encryption_protocol",
    "encryption_cipher",
    "ccert_subject",
    "ccert_fingerprint",
)


@dataclass(slots=True)
class _Message:
    """What the RCPT requests of one message (one ``instance``) told us."""

    started: float
    size_hint: int
    recipients: list[tuple[str, str]] = field(default_factory=list)  # (address, domain)

    @property
    def domains(self) -> set[str]:
        return {domain for _address, domain in self.recipients}


@dataclass(slots=True)
class _Load:
    """Messages and bytes per domain that the index does not show yet."""

    messages: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)

    def add(self, domain: str, messages: int, size: int) -> None:
        self.messages[domain] = self.messages.get(domain, 0) + messages
        self.bytes[domain] = self.bytes.get(domain, 0) + size

    def copy(self) -> _Load:
        return _Load(dict(self.messages), dict(self.bytes))

    def subtract(self, other: _Load) -> None:
        for domain, messages in other.messages.items():
            self.add(domain, -messages, -other.bytes.get(domain, 0))


def _smtpd_process(instance: str) -> str:
    """The smtpd process id in ``instance`` (``25ea.6b0b2911.8b759.0``: pid, time, count)."""
    return instance.partition(".")[0]


class PolicyService:
    """Answers policy requests; one instance lives as long as the daemon."""

    def __init__(
        self,
        ctx: Context,
        writer: BatchWriter,
        *,
        resolver: CachingResolver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ctx = ctx
        self.writer = writer
        self.clock = clock
        self._lock = threading.Lock()
        self.recorder = HeldMailRecorder(ctx, writer, clock=clock)
        self._usage: Mapping[str, DomainUsage] = {}
        self._messages: dict[str, _Message] = {}
        self._current_instance: dict[str, str] = {}  # smtpd process id -> its message
        self._in_flight = _Load()
        self._recorded = _Load()  # recorded since the last usage refresh
        self.etrn = EtrnHook(ctx, writer, lambda: self.recorder.registry, clock=clock)
        self.reload(ctx.settings, resolver)

    # --- state from the index, refreshed in the background ---------------------------

    def reload(self, settings: Settings, resolver: CachingResolver | None = None) -> None:
        """Use new settings for new requests (SIGHUP) and re-read everything."""
        self.ctx.reload(settings)
        self.etrn.configure(settings.etrn, resolver)
        self.recorder.refresh_registry()
        self.refresh_usage()

    def refresh_usage(self) -> None:
        """Re-read the held totals. What was recorded before the read is committed first,
        so every held message counts once, in the index figures or in ``_recorded``
        (one recorded during the read may count twice until the next refresh: the quota
        errs on the safe side)."""
        with self._lock:
            counted = self._recorded.copy()
        self.writer.flush(timeout=WRITER_FLUSH_SECONDS)
        usage = self.ctx.store.usage_by_domain()
        horizon = self.clock() - FORGET_UNFINISHED_SECONDS
        with self._lock:
            self._usage = usage
            self._recorded.subtract(counted)
            for instance in [i for i, m in self._messages.items() if m.started < horizon]:
                self._forget(instance)

    # --- requests ----------------------------------------------------------------------

    def handle(self, request: PolicyRequest) -> str:
        """The action for one request; unknown protocol states get DUNNO."""
        handler = self._handlers.get(request.protocol_state)
        if handler is None:
            log.debug("no policy for protocol_state=%s", request.protocol_state)
            return DUNNO
        return handler(self, request)

    def _on_rcpt(self, request: PolicyRequest) -> str:
        with self._lock:
            domain = self.recorder.held_domain(request.recipient)
            if domain is None:
                return DUNNO
            message = self._messages.get(request.instance)
            if message is None:
                message = self._start_message(request.instance, request.size)
            if domain not in message.domains:
                problem = self._quota_problem(domain, request.size)
                if problem:
                    return self._refuse_for_quota(request, domain, problem)
                self._in_flight.add(domain, 1, request.size)
            message.recipients.append((request.recipient, domain))
        return DUNNO

    def _start_message(self, instance: str, size_hint: int) -> _Message:
        """Remember a new message; its smtpd's previous one, if still here, is over."""
        process = _smtpd_process(instance)
        previous = self._current_instance.get(process)
        if previous is not None:
            self._forget(previous)
        self._current_instance[process] = instance
        message = _Message(self.clock(), size_hint)
        self._messages[instance] = message
        return message

    def _quota_problem(self, domain: str, size: int) -> str | None:
        usage = self._usage.get(domain) or DomainUsage(domain)
        messages = usage.messages + self._recorded.messages.get(domain, 0)
        messages += self._in_flight.messages.get(domain, 0)
        held_bytes = (
            usage.bytes + self._recorded.bytes.get(domain, 0) + self._in_flight.bytes.get(domain, 0)
        )
        return over_quota(self.recorder.registry[domain].quota, messages, held_bytes, size)

    def _refuse_for_quota(self, request: PolicyRequest, domain: str, problem: str) -> str:
        log.info(
            "NOQUEUE: quota: RCPT from %s: <%s>: domain=%s %s",
            request.client_address,
            request.recipient,
            domain,
            problem,
        )
        self.writer.submit_event(
            Event(
                at=self.clock(),
                kind=EventKind.QUOTA,
                node=self.ctx.node,
                actor=request.client_address,
                outcome="refused",
                domain=domain,
                detail={
                    "recipient": request.recipient,
                    "sender": request.sender,
                    "reason": problem,
                },
            )
        )
        return self.ctx.settings.policyd.quota_action.format(domain=domain)

    def _on_end_of_message(self, request: PolicyRequest) -> str:
        with self._lock:
            message = self._forget(request.instance)
        if message is None:
            return DUNNO
        if self.recorder.record(request.queue_id, request.sender, request.size, message.recipients):
            with self._lock:
                for domain in message.domains:
                    self._recorded.add(domain, 1, request.size)
        return DUNNO

    def _forget(self, instance: str) -> _Message | None:
        """Drop what RCPT remembered for ``instance`` (caller holds the lock)."""
        message = self._messages.pop(instance, None)
        if message is not None:
            for domain in message.domains:
                self._in_flight.add(domain, -1, -message.size_hint)
        process = _smtpd_process(instance)
        if self._current_instance.get(process) == instance:
            del self._current_instance[process]
        return message

    def _on_etrn(self, request: PolicyRequest) -> str:
        tls = {key: request.get(key) for key in TLS_ATTRIBUTES}
        outcome = self.etrn.decide(
            EtrnRequest(
                request.etrn_domain,
                request.client_address,
                request.client_name,
                request.sasl_username,
                tls,
            )
        )
        if outcome.verdict is Verdict.ALLOW:
            return OK
        return self.etrn.configured_reply(outcome, request.etrn_domain) or DUNNO

    _handlers: Final[Mapping[str, Callable[[PolicyService, PolicyRequest], str]]] = {
        "RCPT": _on_rcpt,
        "END-OF-MESSAGE": _on_end_of_message,
        "ETRN": _on_etrn,
    }

    def close(self) -> None:
        self.etrn.close()
