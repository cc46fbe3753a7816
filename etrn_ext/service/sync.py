"""Reconcile the index with the live queue: the queue is the truth, the index a view of it.

One pass over ``postqueue -j`` (streamed) adds held recipients the index does not
know (so the index can be rebuilt from the queue alone) and updates changed delay
reasons; recipients no longer queued are finished as delivered, bounced or expired
when the mail log says so, and as ``gone`` otherwise, until a later sync reads the
status. Unchanged rows are not rewritten, so a second sync right after the first
writes almost nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from etrn_ext.core.model import (
    DeliveryRecord,
    Event,
    EventKind,
    HeldState,
    Outcome,
    PendingRecipient,
    QueueEntry,
)
from etrn_ext.core.rules import HeldDomains, message_leads
from etrn_ext.index.rows import HeldValues
from etrn_ext.mta.base import LogPosition
from etrn_ext.service.context import Context

WRITE_BATCH: Final = 5000
PROGRESS_EVERY: Final = 1000
LOG_POSITION_KEY: Final = "mail_log_position"

_FINAL_STATES: Final = {
    Outcome.DELIVERED: HeldState.DELIVERED,
    Outcome.BOUNCED: HeldState.BOUNCED,
    Outcome.EXPIRED: HeldState.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync found and changed."""

    messages_scanned: int
    held_recipients: int
    added: int
    updated: int
    finished: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(slots=True)
class _Outcomes:
    """Final statuses from the mail log, by recipient and (for expiry) by message."""

    by_recipient: dict[tuple[str, str], tuple[HeldState, str]] = field(default_factory=dict)
    expired_messages: set[str] = field(default_factory=set)

    def add(self, record: DeliveryRecord) -> None:
        if record.recipient:
            state = _FINAL_STATES[record.outcome]
            self.by_recipient[(record.queue_id, record.recipient)] = (state, record.text)
        else:
            self.expired_messages.add(record.queue_id)

    def logged(self, queue_id: str, recipient: str) -> bool:
        """Whether the log has this recipient's final status."""
        return queue_id in self.expired_messages or (queue_id, recipient) in self.by_recipient

    def final(self, queue_id: str, recipient: str, last_reason: str) -> tuple[HeldState, str]:
        """How a recipient that left the queue ended, and the text that says so."""
        if queue_id in self.expired_messages:
            return HeldState.EXPIRED, last_reason
        return self.by_recipient.get((queue_id, recipient), (HeldState.GONE, last_reason))


def held_values_of(
    entry: QueueEntry,
    matcher: HeldDomains,
    node: str,
    now: float,
    state: HeldState = HeldState.HELD,
) -> Iterator[HeldValues]:
    """The index rows for the held recipients of one queued message."""
    held = [
        (domain, recipient)
        for recipient in entry.recipients
        if (domain := matcher.for_address(recipient.address)) is not None
    ]
    leads = message_leads((domain, recipient.address) for domain, recipient in held)
    for domain, recipient in held:
        yield HeldValues(
            entry.queue_id,
            node,
            recipient.address,
            domain,
            entry.sender,
            entry.size,
            entry.arrival_time,
            now,
            now,
            state.value,
            recipient.delay_reason,
            int((domain, recipient.address) in leads),
        )


def _unchanged(old: PendingRecipient, new: HeldValues) -> bool:
    return (
        old.state,
        old.reason,
        old.domain,
        old.size,
        old.arrival_time,
        old.counts_message,
    ) == (
        new.state,
        new.reason,
        new.domain,
        new.size,
        new.arrival_time,
        new.counts_message,
    )


@dataclass(frozen=True, slots=True)
class _LogRead:
    """The statuses logged since the last sync, and where reading started and stopped."""

    records: list[DeliveryRecord] = field(default_factory=list)
    since: LogPosition | None = None
    position: LogPosition | None = None

    def outcomes(self, matcher: HeldDomains) -> _Outcomes:
        """The statuses of held domains' recipients (and message expiries)."""
        outcomes = _Outcomes()
        for record in self.records:
            if not record.recipient or matcher.for_address(record.recipient):
                outcomes.add(record)
        return outcomes


def _read_log(ctx: Context) -> _LogRead:
    """Statuses logged since the last sync (none when no mail log is configured)."""
    path = ctx.settings.mta.mail_log
    if not path:
        return _LogRead()
    saved: Any = ctx.store.get_state(ctx.node, LOG_POSITION_KEY)
    since = LogPosition(saved["inode"], saved["offset"]) if saved else None
    records, position = ctx.mta.read_delivery_log(path, since)
    return _LogRead(records, since, position)


def _remember_log_position(ctx: Context, logged: _LogRead) -> None:
    """Saved once the statuses are applied: a sync that fails before reads them again."""
    position = logged.position
    if position is not None and position != logged.since:
        ctx.store.set_state(
            ctx.node, LOG_POSITION_KEY, {"inode": position.inode, "offset": position.offset}
        )


def sync(ctx: Context, progress: Callable[[int], None] | None = None) -> SyncResult:
    """Bring this relay's part of the index in line with its queue."""
    started = ctx.clock()
    timer = time.monotonic()
    listing = ctx.mta.list_queue()  # the MTA lists its queue while we read the index
    # The log is read once the listing has started, so it is never older than the
    # listing: a recipient delivered while the queue was listed, shown as queued, has
    # its final status here and that status wins. Delivered after the read, its status
    # is read by the next sync, which also corrects an earlier "gone" below.
    logged = _read_log(ctx)
    node = ctx.node
    matcher = HeldDomains({domain.name.ascii: domain for domain in ctx.store.list_domains()})
    known = ctx.store.pending_rows(ctx.node)
    seen: dict[tuple[str, str], str] = {}  # held recipients listed -> their delay reason
    pending_writes: list[HeldValues] = []
    messages = added = updated = 0

    for entry in listing:
        messages += 1
        for row in held_values_of(entry, matcher, node, started):
            key = (row.queue_id, row.recipient)
            seen[key] = row.reason
            old = known.get(key)
            if old is None:
                added += 1
            elif _unchanged(old, row):
                continue
            else:
                updated += 1
            pending_writes.append(row)
        if len(pending_writes) >= WRITE_BATCH:
            ctx.store.write_batch(pending_writes, [])
            pending_writes = []
        if progress and messages % PROGRESS_EVERY == 0:
            progress(messages)
    ctx.store.write_batch(pending_writes, [])

    outcomes = logged.outcomes(matcher)
    finishing = [
        (queue_id, recipient, *outcomes.final(queue_id, recipient, old.reason))
        for (queue_id, recipient), old in known.items()
        if (queue_id, recipient) not in seen and old.first_seen < started
    ]
    finishing += [
        (queue_id, recipient, *outcomes.final(queue_id, recipient, reason))
        for (queue_id, recipient), reason in seen.items()
        if outcomes.logged(queue_id, recipient)
    ]
    ctx.store.set_states(ctx.node, finishing)
    # Outcomes logged after an earlier sync already called the recipient "gone".
    late = [
        (queue_id, recipient, state, text)
        for (queue_id, recipient), (state, text) in outcomes.by_recipient.items()
        if (queue_id, recipient) not in seen and (queue_id, recipient) not in known
    ]
    late += [
        (row.queue_id, row.recipient, HeldState.EXPIRED, row.reason)
        for queue_id in outcomes.expired_messages
        for row in ctx.store.held_rows(queue_id=queue_id, states=(HeldState.GONE,))
        if row.node == node
    ]
    ctx.store.set_states(ctx.node, late, only_if=HeldState.GONE)
    ctx.store.touch_pending(ctx.node, started)
    _remember_log_position(ctx, logged)

    finished: dict[str, int] = {}
    for _queue_id, _recipient, state, _reason in finishing:
        finished[state.value] = finished.get(state.value, 0) + 1
    result = SyncResult(
        messages_scanned=messages,
        held_recipients=len(seen),
        added=added,
        updated=updated,
        finished=finished,
        seconds=round(time.monotonic() - timer, 3),
    )
    ctx.store.record_event(
        Event(
            at=ctx.clock(),
            kind=EventKind.SYNC,
            node=ctx.node,
            actor=ctx.actor,
            outcome="ok",
            detail={
                "messages": messages,
                "held_recipients": len(seen),
                "added": added,
                "updated": updated,
                "finished": finished,
            },
        )
    )
    return result
