"""The report's arithmetic, without I/O or a clock: ages in qshape's buckets, the expiry
forecast, silent domains and the outcome of each domain's last flush.

``now`` is always a parameter, so tests put the clock hours or days ahead of mail that
a real MTA queued a moment ago instead of waiting for it to age.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from etrn_ext.core.model import (
    PENDING_STATES,
    ArrivalProfile,
    DomainUsage,
    Event,
    IntermittentDomain,
)
from etrn_ext.core.names import DomainName
from etrn_ext.core.rules import QuotaUse, quota_use

# qshape's default buckets (-t 5 -b 10): each is labelled by the age it stays under, in
# minutes; the last one holds everything older.
AGE_BUCKET_MINUTES: Final = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
AGE_BUCKET_LABELS: Final = (*(str(m) for m in AGE_BUCKET_MINUTES), f"{AGE_BUCKET_MINUTES[-1]}+")
QUEUED: Final = "queued"


def age_cutoffs(now: float) -> tuple[float, ...]:
    """Arrival times at the buckets' bounds: mail that arrived at or before cutoff i is at
    least ``AGE_BUCKET_MINUTES[i]`` old (and so in bucket i + 1 or later)."""
    return tuple(now - minutes * 60.0 for minutes in AGE_BUCKET_MINUTES)


def expiry_cutoff(now: float, queue_lifetime: float, window: float) -> float:
    """Mail that arrived at or before this time is returned to its senders within ``window``."""
    return now + window - queue_lifetime


def age_histogram(recipients: int, recipients_before: Sequence[int]) -> tuple[int, ...]:
    """Recipients per bucket from the counts at or before each cutoff (``age_cutoffs``).

    Like qshape, the histogram counts recipients: a message for three recipients of a
    domain counts three times. Mail from the future (a clock behind the MTA's) is young.
    """
    at_least = (recipients, *recipients_before)
    return (
        *(at_least[i] - at_least[i + 1] for i in range(len(recipients_before))),
        at_least[-1],
    )


def combine(usages: Iterable[DomainUsage], domain: str = "") -> DomainUsage:
    """Several usages as one (for the totals line)."""
    usages = list(usages)
    oldest = [u.oldest_arrival for u in usages if u.oldest_arrival is not None]
    newest = [u.newest_arrival for u in usages if u.newest_arrival is not None]
    return DomainUsage(
        domain,
        sum(u.messages for u in usages),
        sum(u.recipients for u in usages),
        sum(u.bytes for u in usages),
        min(oldest, default=None),
        max(newest, default=None),
    )


@dataclass(frozen=True, slots=True)
class ReportPolicy:
    """The numbers a report is made with: the MTA's queue lifetime and our thresholds."""

    queue_lifetime_seconds: float
    expiry_warning_seconds: float
    silent_after_seconds: float


@dataclass(frozen=True, slots=True)
class FlushSummary:
    """A domain's last flush event and where the recipients of the mail it flushed are now."""

    event: Event
    states: Mapping[str, int]

    def outcome(self) -> dict[str, int]:
        """Recipients by final state, with those still in the queue as ``queued``."""
        merged: dict[str, int] = {}
        for state, count in sorted(self.states.items()):
            name = QUEUED if state in PENDING_STATES else state
            merged[name] = merged.get(name, 0) + count
        return merged


@dataclass(frozen=True, slots=True)
class DomainReport:
    """Everything the report says about one domain."""

    domain: IntermittentDomain
    usage: DomainUsage
    ages: tuple[int, ...]
    quota_use: QuotaUse
    expiring: DomainUsage
    first_expiry: float | None
    last_etrn: Event | None
    last_flush: FlushSummary | None
    silent: bool


@dataclass(frozen=True, slots=True)
class Report:
    """One report: per domain, and the totals over all of them."""

    generated_at: float
    node: str
    policy: ReportPolicy
    domains: tuple[DomainReport, ...]
    totals: DomainUsage
    total_ages: tuple[int, ...]
    total_expiring: DomainUsage
    first_expiry: float | None


def queue_ids_of(event: Event) -> list[str]:
    """The queue ids a flush event names (``detail["queue_ids"]``), ignoring anything else."""
    queue_ids = event.detail.get("queue_ids")
    if not isinstance(queue_ids, list):
        return []
    return [queue_id for queue_id in queue_ids if isinstance(queue_id, str)]


def _flush_summary(
    event: Event, states: Mapping[tuple[str, str, str], Mapping[str, int]]
) -> FlushSummary:
    merged: dict[str, int] = {}
    for queue_id in set(queue_ids_of(event)):
        for state, count in states.get((event.node, queue_id, event.domain or ""), {}).items():
            merged[state] = merged.get(state, 0) + count
    return FlushSummary(event, merged)


def is_silent(
    domain: IntermittentDomain,
    usage: DomainUsage,
    last_etrn: Event | None,
    now: float,
    silent_after: float,
) -> bool:
    """Nothing held, and no ETRN for longer than the setting or the domain's expected outage.

    A site that keeps quiet that long may have lost its link for good, or flushes its
    mail by other means; either way someone should look. Never-seen counts from the
    domain's registration.
    """
    if usage.messages:
        return False
    since = last_etrn.at if last_etrn is not None else domain.created_at
    return now - since > max(silent_after, domain.expected_outage_seconds or 0.0)


def make_report(
    now: float,
    *,
    node: str,
    policy: ReportPolicy,
    registry: Sequence[IntermittentDomain],
    profiles: Mapping[str, ArrivalProfile],
    etrns: Mapping[str, Event],
    flushes: Mapping[str, Event],
    flush_states: Mapping[tuple[str, str, str], Mapping[str, int]],
    held_elsewhere: bool = True,
) -> Report:
    """Put the index's answers together: ``registry`` in name order, and with
    ``held_elsewhere`` also domains the index holds mail for that are not registered
    (a holding transport the milter knows), so that no held mail is left out."""
    entries = {domain.name.ascii: domain for domain in registry}
    if held_elsewhere:
        for name in profiles.keys() - entries.keys():
            entries[name] = IntermittentDomain(DomainName(name))
    empty_ages = (0,) * len(AGE_BUCKET_LABELS)
    reports = []
    for name in sorted(entries):
        domain = entries[name]
        profile = profiles.get(name)
        usage = profile.usage if profile else DomainUsage(name)
        expiring = profile.early if profile else DomainUsage(name)
        last_etrn = etrns.get(name)
        flush = flushes.get(name)
        reports.append(
            DomainReport(
                domain=domain,
                usage=usage,
                ages=(
                    age_histogram(usage.recipients, profile.recipients_before)
                    if profile
                    else empty_ages
                ),
                quota_use=quota_use(domain.quota, usage),
                expiring=expiring,
                first_expiry=(
                    None
                    if expiring.oldest_arrival is None
                    else expiring.oldest_arrival + policy.queue_lifetime_seconds
                ),
                last_etrn=last_etrn,
                last_flush=_flush_summary(flush, flush_states) if flush else None,
                silent=is_silent(domain, usage, last_etrn, now, policy.silent_after_seconds),
            )
        )
    expiries = [r.first_expiry for r in reports if r.first_expiry is not None]
    return Report(
        generated_at=now,
        node=node,
        policy=policy,
        domains=tuple(reports),
        totals=combine(r.usage for r in reports),
        total_ages=tuple(sum(column) for column in zip(*(r.ages for r in reports), strict=True))
        or empty_ages,
        total_expiring=combine(r.expiring for r in reports),
        first_expiry=min(expiries, default=None),
    )
