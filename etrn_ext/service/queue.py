"""What is held, and flushing it through the MTA's own commands."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from etrn_ext.core.errors import (
    EtrnExtError,
    InvalidInputError,
    UnknownDomainError,
    UnknownMessageError,
)
from etrn_ext.core.model import (
    PENDING_STATES,
    Event,
    EventKind,
    HeldRecipient,
    HeldState,
    IntermittentDomain,
    QueueEntry,
)
from etrn_ext.core.names import DomainName, QueueId, domain_part, parse_domain, parse_queue_id
from etrn_ext.core.rules import HeldDomains
from etrn_ext.core.units import parse_duration
from etrn_ext.service.context import Context
from etrn_ext.service.sync import held_values_of, sync

Key = tuple[str, str]


def _registered(ctx: Context, name: str) -> IntermittentDomain:
    domain_name = parse_domain(name)
    domain = ctx.store.get_domain(domain_name)
    if domain is None:
        raise UnknownDomainError(domain_name.ascii)
    return domain


def parse_states(texts: Iterable[str]) -> tuple[HeldState, ...]:
    states = []
    for text in texts:
        try:
            states.append(HeldState(text.lower()))
        except ValueError:
            choices = ", ".join(state.value for state in HeldState)
            raise InvalidInputError("state", text, f"expected one of: {choices}") from None
    return tuple(states) or PENDING_STATES


def list_held(
    ctx: Context,
    domain: str | None = None,
    *,
    older_than: str | None = None,
    states: Iterable[str] = (),
) -> list[HeldRecipient]:
    """Held recipients from the index, oldest first; by default only those still queued."""
    domain_name = _registered(ctx, domain).name if domain else None
    arrived_before = ctx.clock() - parse_duration(older_than) if older_than else None
    return ctx.store.held_rows(
        domain=domain_name, states=parse_states(states), arrived_before=arrived_before
    )


@dataclass(frozen=True, slots=True)
class MessageView:
    """Everything the index knows about one queued message."""

    queue_id: str
    recipients: list[HeldRecipient]
    events: list[Event]


def show_message(ctx: Context, queue_id: str) -> MessageView:
    """A message's recipients in every state, and the events that touched it."""
    value = parse_queue_id(queue_id).value
    rows = ctx.store.held_rows(queue_id=value, states=tuple(HeldState))
    if not rows:
        raise UnknownMessageError(value)
    arrival = min(row.arrival_time for row in rows)
    events: list[Event] = []
    for domain in sorted({row.domain for row in rows}):
        for event in ctx.store.events_for(DomainName(domain), limit=500):
            queue_ids = event.detail.get("queue_ids", [])
            touched = isinstance(queue_ids, list) and value in queue_ids
            if event.at >= arrival and (touched or event.kind is EventKind.ETRN):
                events.append(event)
    events.sort(key=lambda event: event.at)
    return MessageView(value, rows, events)


# --- flushing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What a flush asked for and, with ``--wait``, how it ended."""

    target: str
    queue_ids: list[str]
    recipients: list[Key]
    other_domains: dict[str, list[str]] = field(default_factory=dict)
    on_hold: list[str] = field(default_factory=list)
    waited_seconds: float | None = None
    finished: dict[Key, tuple[str, str]] = field(default_factory=dict)
    remaining: dict[Key, str] = field(default_factory=dict)


def _snapshot(
    ctx: Context, wanted: Callable[[QueueEntry, str], bool]
) -> tuple[list[QueueEntry], dict[Key, str]]:
    """Queued messages with at least one wanted recipient, and those recipients' reasons."""
    entries = []
    keys: dict[Key, str] = {}
    for entry in ctx.mta.list_queue():
        matching = {
            (entry.queue_id, r.address): r.delay_reason
            for r in entry.recipients
            if wanted(entry, r.address)
        }
        if matching:
            entries.append(entry)
            keys.update(matching)
    return entries, keys


def _follow(
    ctx: Context,
    keys: Iterable[Key],
    timeout: float,
    poll_seconds: float,
    sleep: Callable[[float], None],
) -> tuple[dict[Key, str], float]:
    """Poll the queue until ``keys`` have left it or ``timeout``; returns those listed last.

    showq lists the active queue before incoming and deferred, so a message moving into
    the active queue while it lists can be missing from one listing: a recipient has left
    the queue only when two listings in a row miss it.
    """
    started = time.monotonic()
    following = set(keys)
    missed_before: set[Key] = set()
    while True:
        listed = {
            (entry.queue_id, r.address): r.delay_reason
            for entry in ctx.mta.list_queue()
            for r in entry.recipients
            if (entry.queue_id, r.address) in following
        }
        missed = following - listed.keys()
        following -= missed & missed_before
        missed_before = missed - missed_before
        elapsed = time.monotonic() - started
        if not following or elapsed >= timeout:
            return listed, round(elapsed, 2)
        sleep(min(poll_seconds, max(timeout - elapsed, 0.0)))


@dataclass(frozen=True, slots=True)
class _FlushScope:
    """The queued mail one flush covers, and what the index and the audit trail say of it."""

    entries: list[QueueEntry]
    keys: dict[Key, str]
    matcher: HeldDomains
    domain: str | None
    other_domains: dict[str, list[str]] = field(default_factory=dict)

    @property
    def queue_ids(self) -> list[str]:
        return [entry.queue_id for entry in self.entries]

    def only(self, queue_ids: Collection[str]) -> _FlushScope:
        """The part of this flush that covers ``queue_ids``."""
        return _FlushScope(
            [entry for entry in self.entries if entry.queue_id in queue_ids],
            {key: reason for key, reason in self.keys.items() if key[0] in queue_ids},
            self.matcher,
            self.domain,
            {q: others for q, others in self.other_domains.items() if q in queue_ids},
        )


def _record_flush(ctx: Context, scope: _FlushScope, not_flushed: Sequence[str] = ()) -> None:
    """Index the flushed mail as flushing and record the flush in the audit trail."""
    now = ctx.clock()
    ctx.store.write_batch(
        [
            row
            for entry in scope.entries
            for row in held_values_of(entry, scope.matcher, ctx.node, now, HeldState.FLUSHING)
        ],
        [],
    )
    detail: dict[str, object] = {
        "queue_ids": scope.queue_ids,
        "messages": len(scope.entries),
        "recipients": len(scope.keys),
        "other_domains": scope.other_domains,
    }
    if not_flushed:
        detail["not_flushed"] = list(not_flushed)
    ctx.store.record_event(
        Event(
            at=ctx.clock(),
            kind=EventKind.FLUSH,
            node=ctx.node,
            actor=ctx.actor,
            outcome="requested",
            domain=scope.domain,
            detail=detail,
        )
    )


def _finish(
    ctx: Context,
    target: str,
    scope: _FlushScope,
    *,
    wait: float | None,
    poll_seconds: float,
    sleep: Callable[[float], None],
) -> FlushResult:
    """Record the flush, then follow the queue if asked to."""
    _record_flush(ctx, scope)
    queue_ids, keys = scope.queue_ids, scope.keys
    on_hold = [entry.queue_id for entry in scope.entries if entry.queue_name == "hold"]
    result = FlushResult(target, queue_ids, list(keys), scope.other_domains, on_hold)
    if wait is None:
        return result
    listed_last, waited = _follow(ctx, keys, wait, poll_seconds, sleep)
    sync(ctx)
    states = {
        (row.queue_id, row.recipient): (row.state, row.reason)
        for queue_id in queue_ids
        for row in ctx.store.held_rows(queue_id=queue_id, states=tuple(HeldState))
        if row.node == ctx.node
    }
    finished: dict[Key, tuple[str, str]] = {}
    remaining: dict[Key, str] = {}
    for key in keys:
        state, reason = states.get(key, (HeldState.GONE, ""))
        if state in PENDING_STATES:  # the sync's listing still had it
            remaining[key] = reason
        elif state is HeldState.GONE and key in listed_last:  # missed by one listing only
            remaining[key] = listed_last[key]
        else:
            finished[key] = (state.value, reason)
    return FlushResult(
        target, queue_ids, list(keys), scope.other_domains, on_hold, waited, finished, remaining
    )


def flush_domain(
    ctx: Context,
    name: str,
    *,
    wait: float | None = None,
    poll_seconds: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> FlushResult:
    """Flush a registered domain's held mail with the MTA's per-domain flush.

    Nothing is asked of the MTA when nothing is queued: a Postfix flush of an empty
    flush log lets the next arriving message bypass ``defer_transports``.
    """
    domain = _registered(ctx, name)
    matcher = HeldDomains({domain.name.ascii: domain})
    entries, keys = _snapshot(ctx, lambda _entry, address: matcher.for_address(address) is not None)
    other_domains = {
        entry.queue_id: [r.address for r in entry.recipients if not matcher.for_address(r.address)]
        for entry in entries
    }
    other_domains = {queue_id: others for queue_id, others in other_domains.items() if others}
    scope = _FlushScope(entries, keys, matcher, domain.name.ascii, other_domains)
    # Postfix keeps one flush log per recipient domain: flush every (sub)domain that has mail.
    recipient_domains = sorted({domain_part(address) for _queue_id, address in keys})
    for done, recipient_domain in enumerate(recipient_domains):
        try:
            ctx.mta.flush_domain(parse_domain(recipient_domain))
        except EtrnExtError:
            # The mail of the domains flushed before this one is on its way: say so.
            flushed = {q for q, address in keys if domain_part(address) in recipient_domains[:done]}
            if flushed:
                _record_flush(ctx, scope.only(flushed), not_flushed=recipient_domains[done:])
            raise
    return _finish(ctx, domain.name.ascii, scope, wait=wait, poll_seconds=poll_seconds, sleep=sleep)


def flush_messages(
    ctx: Context,
    queue_ids: Iterable[str],
    *,
    wait: float | None = None,
    poll_seconds: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> FlushResult:
    """Flush exactly these queued messages (all their recipients)."""
    wanted: list[QueueId] = [parse_queue_id(text) for text in queue_ids]
    values = {queue_id.value for queue_id in wanted}
    entries, keys = _snapshot(ctx, lambda entry, _address: entry.queue_id in values)
    missing = values - {entry.queue_id for entry in entries}
    if missing:
        raise UnknownMessageError(", ".join(sorted(missing)), where="queue")
    ctx.mta.flush_ids(wanted)
    matcher = HeldDomains({domain.name.ascii: domain for domain in ctx.store.list_domains()})
    held_domains = {matcher.for_address(address) for _queue_id, address in keys} - {None}
    scope = _FlushScope(
        entries, keys, matcher, held_domains.pop() if len(held_domains) == 1 else None
    )
    return _finish(
        ctx,
        f"queue id(s) {', '.join(sorted(values))}",
        scope,
        wait=wait,
        poll_seconds=poll_seconds,
        sleep=sleep,
    )


def list_events(
    ctx: Context, domain: str | None = None, *, kinds: Iterable[str] = (), limit: int = 50
) -> list[Event]:
    """The audit trail, newest first: ETRN requests, flushes, syncs, quota refusals, changes."""
    wanted = set()
    for text in kinds:
        try:
            wanted.add(EventKind(text.lower()))
        except ValueError:
            choices = ", ".join(kind.value for kind in EventKind)
            raise InvalidInputError("event kind", text, f"expected one of: {choices}") from None
    domain_name = parse_domain(domain) if domain else None
    return ctx.store.events_for(domain_name, kinds=wanted or None, limit=limit)
