"""The domain model: frozen values that cross every layer.

Times are POSIX seconds (floats) everywhere: that is what ``postqueue -j`` reports and
what both SQLite and PostgreSQL store cheaply. Queue ids read back from the index stay
plain strings; they pass ``names.parse_queue_id`` again before reaching a command line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, NamedTuple

from etrn_ext.core.names import DomainName

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class HeldState(StrEnum):
    """Where one held recipient is in its life; the first two are still in the MTA queue."""

    HELD = "held"
    FLUSHING = "flushing"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    GONE = "gone"


PENDING_STATES: Final = (HeldState.HELD, HeldState.FLUSHING)


class EventKind(StrEnum):
    """What an audit event records."""

    ETRN = "etrn"
    FLUSH = "flush"
    SYNC = "sync"
    QUOTA = "quota"
    DOMAIN = "domain"
    NOTICE = "notice"


@dataclass(frozen=True, slots=True)
class EtrnClients:
    """Who may ask the relay to flush a domain.

    Networks, client host names (the verified name, or any address DNS gives for it),
    SASL logins, and ``mx``: any address of the domain's own MX or A records.
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: tuple[DomainName, ...] = ()
    sasl_users: tuple[str, ...] = ()
    mx: bool = False

    def as_texts(self) -> list[str]:
        """The rules as ``--allow`` values, so that they can be typed back in."""
        return [
            *(str(network) for network in self.networks),
            *(str(host) for host in self.hosts),
            *(f"sasl:{user}" for user in self.sasl_users),
            *(["dns:mx"] if self.mx else []),
        ]


@dataclass(frozen=True, slots=True)
class Quota:
    """Upper limits on what the relay holds for one domain; ``None`` is unlimited."""

    messages: int | None = None
    bytes: int | None = None


@dataclass(frozen=True, slots=True)
class IntermittentDomain:
    """A registered domain whose mail the relay holds until the site asks for it."""

    name: DomainName
    include_subdomains: bool = False
    clients: EtrnClients = field(default_factory=EtrnClients)
    quota: Quota = field(default_factory=Quota)
    contacts: tuple[str, ...] = ()
    note: str = ""
    expected_outage_seconds: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class HeldRecipient:
    """One recipient of one queued message, as the index last saw it."""

    node: str
    queue_id: str
    recipient: str
    domain: str
    sender: str
    size: int
    arrival_time: float
    first_seen: float
    last_seen: float
    state: HeldState = HeldState.HELD
    reason: str = ""


class PendingRecipient(NamedTuple):
    """The index's view of a still-queued recipient, as sync compares it with the queue."""

    domain: str
    size: int
    arrival_time: float
    first_seen: float
    state: str
    reason: str
    counts_message: int


@dataclass(frozen=True, slots=True)
class Event:
    """An audit record: who did what to which domain, when, and how it ended."""

    at: float
    kind: EventKind
    node: str
    actor: str
    outcome: str
    domain: str | None = None
    detail: Mapping[str, object] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """Plain values by name, as the index stores them and ``--json`` shows them."""
        return {
            "at": self.at,
            "kind": self.kind.value,
            "node": self.node,
            "domain": self.domain,
            "actor": self.actor,
            "outcome": self.outcome,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True, slots=True)
class DomainUsage:
    """What the index holds for one domain right now (or the part of it a report asks about)."""

    domain: str
    messages: int = 0
    recipients: int = 0
    bytes: int = 0
    oldest_arrival: float | None = None
    newest_arrival: float | None = None


@dataclass(frozen=True, slots=True)
class ArrivalProfile:
    """One domain's held mail split by arrival time, as one pass over the index yields it.

    ``recipients_before[i]`` counts the recipients that arrived at or before the i-th
    cutoff asked for; ``early`` is the mail that arrived at or before the early cutoff.
    """

    usage: DomainUsage
    recipients_before: tuple[int, ...]
    early: DomainUsage


class NoticeKind(StrEnum):
    """What a notice to a domain's contacts is about."""

    WAITING = "waiting"
    EXPIRY = "expiry"


@dataclass(frozen=True, slots=True)
class SentNotice:
    """The last notice of one kind sent about a domain, as notify remembers it."""

    domain: str
    kind: NoticeKind
    sent_at: float
    covers_until: float
    recipients: tuple[str, ...]
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A message for people (a notice, the digest): plain text, optionally with HTML."""

    sender: str
    recipients: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    """A recipient the MTA still has to deliver, with the reason of its last deferral."""

    address: str
    delay_reason: str = ""


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One message in the MTA queue, with its still-pending recipients only."""

    queue_id: str
    queue_name: str
    arrival_time: float
    size: int
    sender: str
    recipients: tuple[QueuedRecipient, ...]


class Outcome(StrEnum):
    """How a recipient left the queue, as the MTA's log tells it."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A final status from the mail log; an empty ``recipient`` covers the whole message."""

    queue_id: str
    recipient: str
    outcome: Outcome
    text: str = ""
