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
from collections.abc import Callable, Iterable, Iterator, Mapping
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


def _changed(old: EtrnSettings, new: EtrnSettings, *names: str) -> bool:
    return any(getattr(old, name) != getattr(new, name) for name in names)


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
        dns = ("dns_timeout_seconds", "dns_cache_seconds")
        limits = ("domain_flush_interval_seconds", "client_limit", "client_window_seconds")
        if resolver is not None or previous is None or _changed(previous, settings, *dns):
            self.resolver = resolver or CachingResolver(
                timeout=settings.dns_timeout_seconds, cache_seconds=settings.dns_cache_seconds
            )
        if previous is None or _changed(previous, settings, *limits):
            self.throttle = FlushThrottle(
                domain_interval=settings.domain_flush_interval_seconds,
                client_limit=settings.client_limit,
                client_window=settings.client_window_seconds,
            )
        self.settings = settings

    def decide(
        self,
        request: EtrnRequest,
        *,
        deadline: float | None = None,
        mta_runs: Callable[[], Iterable[str]] | None = None,
    ) -> EtrnOutcome:
        """Decide, audit, and start the flush work of an allowed ETRN.

        ``deadline`` (``time.monotonic()``) is when the MTA stops waiting for the answer:
        DNS ends before it, and a decision that still misses it is UNDECIDED and starts
        nothing, since the MTA was answered without it. ``mta_runs``, when the MTA's own
        ETRN may run, gives the recipients whose mail it would run (Sendmail's substring
        match: ``ETRN site.tes`` runs bob@site.test): the ETRN is also one for each
        registered domain among them, and refused unless the client may flush them all.
        """
        outcome = self._decision(request, deadline, mta_runs)
        self._audit(request, outcome)
        return outcome

    def named_entry(self, argument: str) -> tuple[DomainName | None, IntermittentDomain | None]:
        """The domain an ETRN argument names (``@domain`` too; None if it names none) and
        the registry entry holding that domain's mail, if any."""
        try:
            name = parse_domain(argument.removeprefix("@"))
        except InvalidInputError:
            return None, None
        return name, registered_domain_for(name, self.registry())

    def _decision(
        self,
        request: EtrnRequest,
        deadline: float | None,
        mta_runs: Callable[[], Iterable[str]] | None,
    ) -> EtrnOutcome:
        if request.argument.startswith("#"):  # Sendmail's queue-group form: all sites at once
            return EtrnOutcome(Verdict.REFUSE, None, "ETRN for a queue group is not offered")
        name, named = self.named_entry(request.argument)
        client = EtrnClient(
            parse_address(request.client_address), request.client_name, request.sasl_username
        )
        dns_until = None if deadline is None else deadline - DNS_MARGIN_SECONDS
        decided = self._decide_each(self._concerned(named, mta_runs), client, dns_until)
        if not decided:
            reason = (
                "not a registered intermittent domain"
                if name
                else "not a domain name; left to the MTA"
            )
            return EtrnOutcome(Verdict.UNREGISTERED, name, reason)
        entries = [entry for entry, _decision in decided]
        refused = decided[-1][1].verdict is not Verdict.ALLOW
        entry, decision = decided[-1] if refused else decided[0]
        if entry is not named:
            decision = EtrnDecision(
                decision.verdict, f"matches {entry.name}'s mail; {decision.reason}"
            )
        if deadline is not None and time.monotonic() > deadline:
            return EtrnOutcome(
                Verdict.UNDECIDED, entry.name, "not decided in time; the MTA's own ETRN ran"
            )
        if decision.verdict is not Verdict.ALLOW:
            return EtrnOutcome(decision.verdict, entry.name, decision.reason)
        throttled = self._start_flushes(entries, request.client_address)
        return EtrnOutcome(Verdict.ALLOW, entries[0].name, decision.reason, throttled)

    def _concerned(
        self,
        named: IntermittentDomain | None,
        mta_runs: Callable[[], Iterable[str]] | None,
    ) -> Iterator[IntermittentDomain]:
        """The registered domains an ETRN is for: the one it names, then those whose mail
        the MTA's own run would reach (the queue is read only if the first is allowed)."""
        if named is not None:
            yield named
        if mta_runs is None:
            return
        registry = self.registry()
        held = HeldDomains(registry)
        names = {name for address in mta_runs() if (name := held.for_address(address))}
        if named is not None:
            names.discard(named.name.ascii)
        yield from (registry[name] for name in sorted(names))

    def _decide_each(
        self, entries: Iterable[IntermittentDomain], client: EtrnClient, dns_until: float | None
    ) -> list[tuple[IntermittentDomain, EtrnDecision]]:
        """Each domain's decision, up to the first refusal."""
        decided: list[tuple[IntermittentDomain, EtrnDecision]] = []
        for entry in entries:
            decided.append((entry, self._may_etrn(entry, client, dns_until)))
            if decided[-1][1].verdict is not Verdict.ALLOW:
                break
        return decided

    def _may_etrn(
        self, entry: IntermittentDomain, client: EtrnClient, dns_until: float | None
    ) -> EtrnDecision:
        decision = may_etrn(entry, client)
        if decision.verdict is Verdict.REFUSE and needs_dns(entry):
            decision = may_etrn(entry, client, self.resolver.facts_for(entry, dns_until))
        return decision

    def _start_flushes(
        self, entries: list[IntermittentDomain], client_address: str
    ) -> Throttled | None:
        """Admit each domain's flush past the throttle and start it; the first hold-back."""
        throttled = None
        for entry in entries:
            with self._lock:
                held_back = self.throttle.admit(entry.name.ascii, client_address, self.clock())
            if held_back is None and self.settings.targeted_flush:
                self._flusher.submit(self._flush, entry, client_address)
            throttled = throttled or held_back
        return throttled

    def configured_reply(self, outcome: EtrnOutcome, argument: str) -> str | None:
        """The configured answer to an ETRN that is not allowed, ``{domain}`` filled in;
        None where the MTA's own rules decide (allowed, or the argument is no domain).

        etrn-policyd and etrn-socketmap both answer with it, so they say the same thing.
        """
        if outcome.verdict is Verdict.REFUSE:
            target = outcome.domain.ascii if outcome.domain else argument
            return self.settings.refuse_action.format(domain=target)
        if outcome.verdict is Verdict.UNREGISTERED and outcome.domain is not None:
            return self.settings.unregistered_action.format(domain=outcome.domain.ascii)
        return None

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
