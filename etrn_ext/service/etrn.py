"""The ETRN hook shared by etrn-policyd (Postfix) and etrn-socketmap (Sendmail).

It decides whether a client may flush a domain (the pure rules in ``core.policy``,
with DNS facts when a rule needs them), writes the audit event, throttles repeated
requests, and flushes by queue id whatever the MTA's own ETRN would miss (on Postfix:
mail in no flush log; on Sendmail in exact mode: everything, since the hook answers so
that Sendmail runs nothing of its own). The flush runs in a thread of its own: the
reply never waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from etrn_ext.config import EtrnSettings
from etrn_ext.core.errors import EtrnExtError, InvalidInputError
from etrn_ext.core.model import Event, EventKind, IntermittentDomain
from etrn_ext.core.names import DomainName, parse_domain, parse_queue_id
from etrn_ext.core.policy import (
    EtrnClient,
    EtrnDecision,
    FlushThrottle,
    Throttled,
    Verdict,
    may_etrn,
    needs_dns,
    parse_address,
)
from etrn_ext.core.rules import HeldDomains, registered_domain_for
from etrn_ext.index.writer import BatchWriter
from etrn_ext.net.resolve import CachingResolver
from etrn_ext.service.context import Context

log = logging.getLogger(__name__)

# Of a decision's deadline, DNS may use all but this: a lookup that runs out of time
# fails (its rule does not match), and the rest of the decision still makes it.
DNS_MARGIN_SECONDS: Final = 0.5


@dataclass(frozen=True, slots=True)
class EtrnRequest:
    """An ETRN as the MTA reports it to the hook."""

    argument: str
    client_address: str
    client_name: str = ""
    sasl_username: str = ""
    tls: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EtrnOutcome:
    """The decision for one ETRN; ``domain`` is None when the argument is not a domain."""

    verdict: Verdict
    domain: DomainName | None
    reason: str
    throttled: Throttled | None = None


def _dns_changed(old: EtrnSettings, new: EtrnSettings) -> bool:
    return (old.dns_timeout_seconds, old.dns_cache_seconds) != (
        new.dns_timeout_seconds,
        new.dns_cache_seconds,
    )


def _limits_changed(old: EtrnSettings, new: EtrnSettings) -> bool:
    return (old.domain_flush_interval_seconds, old.client_limit, old.client_window_seconds) != (
        new.domain_flush_interval_seconds,
        new.client_limit,
        new.client_window_seconds,
    )


class EtrnHook:
    """One per daemon; safe to call from several threads."""

    def __init__(
        self,
        ctx: Context,
        writer: BatchWriter,
        registry: Callable[[], Mapping[str, IntermittentDomain]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ctx = ctx
        self.writer = writer
        self.registry = registry
        self.clock = clock
        self._lock = threading.Lock()
        self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etrn-flush")
        self.configure(ctx.settings.etrn)

    def configure(self, settings: EtrnSettings, resolver: CachingResolver | None = None) -> None:
        """(Re)build what depends on the settings; SIGHUP calls this for new requests.

        The DNS cache and the rate limits' memory are kept when their settings did not
        change: a reload must not let every client flush again at once.
        """
        previous = getattr(self, "settings", None)
        if resolver is not None or previous is None or _dns_changed(previous, settings):
            self.resolver = resolver or CachingResolver(
                timeout=settings.dns_timeout_seconds, cache_seconds=settings.dns_cache_seconds
            )
        if previous is None or _limits_changed(previous, settings):
            self.throttle = FlushThrottle(
                domain_interval=settings.domain_flush_interval_seconds,
                client_limit=settings.client_limit,
                client_window=settings.client_window_seconds,
            )
        self.settings = settings

    def decide(self, request: EtrnRequest, *, deadline: float | None = None) -> EtrnOutcome:
        """Decide, audit, and start the flush work of an allowed ETRN.

        ``deadline`` (``time.monotonic()``) is when the MTA stops waiting for the answer:
        DNS ends before it, and a decision that still misses it is UNDECIDED and starts
        nothing, since the MTA was answered without it.
        """
        if request.argument.startswith("#"):  # Sendmail's queue-group form: all sites at once
            outcome = EtrnOutcome(Verdict.REFUSE, None, "ETRN for a queue group is not offered")
            self._audit(request, outcome)
            return outcome
        try:
            name = parse_domain(request.argument.removeprefix("@"))
        except InvalidInputError:
            outcome = EtrnOutcome(Verdict.UNREGISTERED, None, "not a domain name; left to the MTA")
            self._audit(request, outcome)
            return outcome
        entry = registered_domain_for(name, self.registry())
        client = EtrnClient(
            parse_address(request.client_address), request.client_name, request.sasl_username
        )
        decision = may_etrn(entry, client)
        if entry is not None and decision.verdict is Verdict.REFUSE and needs_dns(entry):
            dns_until = None if deadline is None else deadline - DNS_MARGIN_SECONDS
            decision = may_etrn(entry, client, self.resolver.facts_for(entry, dns_until))
        if deadline is not None and time.monotonic() > deadline:
            decision = EtrnDecision(
                Verdict.UNDECIDED, "not decided in time; the MTA's own ETRN ran"
            )
        throttled = None
        if decision.verdict is Verdict.ALLOW and entry is not None:
            with self._lock:
                throttled = self.throttle.admit(
                    entry.name.ascii, request.client_address, self.clock()
                )
            if throttled is None and self.settings.targeted_flush:
                self._flusher.submit(self._flush, entry, request.client_address)
        outcome = EtrnOutcome(
            decision.verdict, entry.name if entry else name, decision.reason, throttled
        )
        self._audit(request, outcome)
        return outcome

    def _audit(self, request: EtrnRequest, outcome: EtrnOutcome) -> None:
        sasl = f" sasl_username={request.sasl_username}" if request.sasl_username else ""
        log.info(
            "ETRN %s from %s[%s]%s: %s (%s)%s",
            outcome.domain or repr(request.argument),
            request.client_name or "unknown",
            request.client_address,
            sasl,
            outcome.verdict.value,
            outcome.reason,
            f"; no new flush: {outcome.throttled.reason}" if outcome.throttled else "",
        )
        detail: dict[str, object] = {
            "etrn_domain": request.argument,
            "client_name": request.client_name,
            "sasl_username": request.sasl_username,
            "reason": outcome.reason,
            "throttled": outcome.throttled.reason if outcome.throttled else None,
            **{key: value for key, value in request.tls.items() if value},
        }
        self.writer.submit_event(
            Event(
                at=self.clock(),
                kind=EventKind.ETRN,
                node=self.ctx.node,
                actor=request.client_address,
                outcome=outcome.verdict.value,
                domain=outcome.domain.ascii if outcome.domain else None,
                detail=detail,
            )
        )

    def _uncovered(self, domain: IntermittentDomain) -> list[str]:
        """Queued messages with a recipient held for ``domain`` that the MTA's ETRN misses."""
        matcher = HeldDomains({domain.name.ascii: domain})
        return sorted(
            {
                entry.queue_id
                for entry in self.ctx.mta.list_queue()
                if any(matcher.for_address(r.address) for r in entry.recipients)
                and not self.ctx.mta.native_etrn_covers(entry)
            }
        )

    def _flush(self, domain: IntermittentDomain, client_address: str) -> None:
        """Flush by queue id what the MTA's own ETRN misses (runs in the flush thread)."""
        try:
            wanted = self._uncovered(domain)
            if not wanted:
                return
            self.ctx.mta.flush_ids([parse_queue_id(queue_id) for queue_id in wanted])
            log.info(
                "ETRN %s from %s: flushed %d message(s) by queue id",
                domain.name,
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
                    domain=domain.name.ascii,
                    detail={"queue_ids": wanted, "messages": len(wanted), "by": "queue id"},
                )
            )
        except EtrnExtError as exc:  # runs in its own thread: nobody else would log it
            log.error(
                "ETRN %s from %s: targeted flush failed: %s", domain.name, client_address, exc
            )

    def close(self) -> None:
        """Wait for flush work in progress."""
        self._flusher.shutdown(wait=True)
