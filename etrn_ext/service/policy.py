"""The use cases behind etrn-policyd: quota at RCPT, recording at END-OF-MESSAGE, the ETRN hook.

Replies never wait for the database: the registry and the held-mail totals are read
from the index in the background (``refresh``) and kept in memory, rows and audit
events go to the batched writer, and a targeted flush runs in its own thread.
Postfix's ``instance`` attribute ties a message's RCPT requests (the first of which
has no queue id) to its END-OF-MESSAGE request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from etrn_ext.config import Settings
from etrn_ext.core.errors import EtrnExtError, InvalidInputError, MtaCommandError
from etrn_ext.core.model import DomainUsage, Event, EventKind, IntermittentDomain
from etrn_ext.core.names import DomainName, parse_domain, parse_queue_id
from etrn_ext.core.policy import (
    EtrnClient,
    FlushThrottle,
    Verdict,
    may_etrn,
    needs_dns,
    over_quota,
    parse_address,
)
from etrn_ext.core.postfix_setup import is_listed, split_list
from etrn_ext.core.rules import registered_domain_for
from etrn_ext.index.writer import BatchWriter
from etrn_ext.mta.postfix import PostfixAdapter
from etrn_ext.net.resolve import CachingResolver
from etrn_ext.service.context import Context
from etrn_ext.service.recording import HeldMailRecorder
from etrn_ext.wire.policy import PolicyRequest

log = logging.getLogger(__name__)

DUNNO: Final = "DUNNO"
OK: Final = "OK"
FORGET_UNFINISHED_SECONDS: Final = 3600.0
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
        self._in_flight = _Load()
        self._recorded = _Load()  # recorded since the last usage refresh
        self._fast_flush: tuple[list[str], bool] = (["*"], True)
        self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etrn-flush")
        self.reload(ctx.settings, resolver)

    # --- state from the index, refreshed in the background ---------------------------

    def reload(self, settings: Settings, resolver: CachingResolver | None = None) -> None:
        """Use new settings for new requests (SIGHUP) and re-read everything."""
        etrn = settings.etrn
        self.ctx.settings = settings
        self.resolver = resolver or CachingResolver(
            timeout=etrn.dns_timeout_seconds, cache_seconds=etrn.dns_cache_seconds
        )
        self.throttle = FlushThrottle(
            domain_interval=etrn.domain_flush_interval_seconds,
            client_limit=etrn.client_limit,
            client_window=etrn.client_window_seconds,
        )
        self.recorder.refresh_registry()
        self.refresh_usage()
        self.refresh_flush_domains()

    def refresh_usage(self) -> None:
        usage = self.ctx.store.usage_by_domain()
        horizon = self.clock() - FORGET_UNFINISHED_SECONDS
        with self._lock:
            self._usage = usage
            self._recorded = _Load()
            for instance in [i for i, m in self._messages.items() if m.started < horizon]:
                self._forget(instance)

    def refresh_flush_domains(self) -> None:
        """Which recipient domains Postfix can flush per domain (fast_flush_domains)."""
        names = ["fast_flush_domains", "parent_domain_matches_subdomains"]
        try:
            values = PostfixAdapter(self.ctx.settings.mta).parameters(names)
        except MtaCommandError as exc:
            log.warning("cannot read fast_flush_domains (%s); ETRN flushes by queue id", exc)
            self._fast_flush = ([], False)
            return
        parents = "fast_flush_domains" in split_list(
            values.get("parent_domain_matches_subdomains", "")
        )
        self._fast_flush = (split_list(values.get("fast_flush_domains", "")), parents)

    def _has_flush_log(self, address: str) -> bool:
        """Whether Postfix's own ETRN flush covers this recipient's domain."""
        patterns, parents = self._fast_flush
        listed = is_listed(address.rpartition("@")[2].lower(), patterns, parents_match=parents)
        return listed is not False  # lookup tables: assume yes, as Postfix usually is set up

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
                message = _Message(self.clock(), request.size)
                self._messages[request.instance] = message
            if domain not in message.domains:
                problem = self._quota_problem(domain, request.size)
                if problem:
                    return self._refuse_for_quota(request, domain, problem)
                self._in_flight.add(domain, 1, request.size)
            message.recipients.append((request.recipient, domain))
        return DUNNO

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
        return message

    def _on_etrn(self, request: PolicyRequest) -> str:
        try:
            name = parse_domain(request.etrn_domain)
        except InvalidInputError:
            log.info(
                "ETRN %r from %s: not a domain name; left to the MTA",
                request.etrn_domain,
                request.client_address,
            )
            return DUNNO
        with self._lock:
            entry = registered_domain_for(name, self.recorder.registry)
        client = EtrnClient(
            parse_address(request.client_address), request.client_name, request.sasl_username
        )
        decision = may_etrn(entry, client)
        if entry is not None and decision.verdict is Verdict.REFUSE and needs_dns(entry):
            decision = may_etrn(entry, client, self.resolver.facts_for(entry))
        throttled = None
        etrn = self.ctx.settings.etrn
        if decision.verdict is Verdict.ALLOW and entry is not None:
            with self._lock:
                throttled = self.throttle.admit(
                    entry.name.ascii, request.client_address, self.clock()
                )
            if throttled is None and etrn.targeted_flush:
                self._flusher.submit(self._targeted_flush, entry.name, request.client_address)
        action = {
            Verdict.ALLOW: OK,
            Verdict.REFUSE: etrn.refuse_action.format(domain=name.ascii),
            Verdict.UNREGISTERED: etrn.unregistered_action,
        }[decision.verdict]
        self._audit_etrn(
            request,
            name,
            entry,
            verdict=decision.verdict,
            reason=decision.reason,
            throttled=throttled,
        )
        return action

    def _audit_etrn(
        self,
        request: PolicyRequest,
        name: DomainName,
        entry: IntermittentDomain | None,
        *,
        verdict: Verdict,
        reason: str,
        throttled: str | None,
    ) -> None:
        sasl = f" sasl_username={request.sasl_username}" if request.sasl_username else ""
        log.info(
            "ETRN %s from %s[%s]%s: %s (%s)%s",
            name,
            request.client_name or "unknown",
            request.client_address,
            sasl,
            verdict.value,
            reason,
            f"; no new flush: {throttled}" if throttled else "",
        )
        detail: dict[str, object] = {
            "etrn_domain": request.etrn_domain,
            "client_name": request.client_name,
            "sasl_username": request.sasl_username,
            "reason": reason,
            "throttled": throttled,
        }
        detail.update({key: request.get(key) for key in TLS_ATTRIBUTES if request.get(key)})
        self.writer.submit_event(
            Event(
                at=self.clock(),
                kind=EventKind.ETRN,
                node=self.ctx.node,
                actor=request.client_address,
                outcome=verdict.value,
                domain=(entry.name if entry else name).ascii,
                detail=detail,
            )
        )

    def _uncovered(self, domain: DomainName) -> list[str]:
        """Queue ids of the domain's held mail that Postfix's own ETRN flush misses.

        A message enters a flush log only when a delivery agent defers it, so queued mail
        without a delay reason (e.g. just released from the hold queue) is missed, and so
        is all mail of a domain that has no flush log.
        """
        rows = [row for row in self.ctx.store.held_for(domain) if row.node == self.ctx.node]
        if not rows:
            return []
        known = {row.queue_id for row in rows}
        without_log = {row.queue_id for row in rows if not self._has_flush_log(row.recipient)}
        never_deferred = {
            entry.queue_id
            for entry in self.ctx.mta.list_queue()
            if entry.queue_id in known
            and entry.queue_name == "deferred"  # incoming/active: being delivered right now
            and any(not recipient.delay_reason for recipient in entry.recipients)
        }
        return sorted(without_log | never_deferred)

    def _targeted_flush(self, domain: DomainName, client_address: str) -> None:
        """Flush (postqueue -i) what Postfix's own ETRN flush misses; see ``_uncovered``."""
        try:
            wanted = self._uncovered(domain)
            if not wanted:
                return
            self.ctx.mta.flush_ids([parse_queue_id(queue_id) for queue_id in wanted])
            log.info(
                "ETRN %s from %s: flushed %d message(s) by queue id",
                domain,
                client_address,
                len(wanted),
            )
            self.writer.submit_event(
                Event(
                    at=self.clock(),
                    kind=EventKind.FLUSH,
                    node=self.ctx.node,
                    actor=f"ETRN from {client_address}",
                    outcome="requested",
                    domain=domain.ascii,
                    detail={"queue_ids": wanted, "messages": len(wanted), "by": "postqueue -i"},
                )
            )
        except EtrnExtError as exc:  # runs in its own thread: nobody else would log it
            log.error("ETRN %s from %s: targeted flush failed: %s", domain, client_address, exc)

    _handlers: Final[Mapping[str, Callable[[PolicyService, PolicyRequest], str]]] = {
        "RCPT": _on_rcpt,
        "END-OF-MESSAGE": _on_end_of_message,
        "ETRN": _on_etrn,
    }

    def close(self) -> None:
        self._flusher.shutdown(wait=True)
