"""Who is told what, and when: notices to a domain's contacts, decided without I/O.

Two kinds. A *waiting* notice once the oldest held message has waited longer than the
threshold (the setting, or the domain's expected outage when that is longer), and an
*expiry* warning once held mail will be returned to its senders within the warning
window. Each notice remembers the newest arrival among the mail it told about; the next
notice of its kind is due only when all the mail in question arrived after that, i.e.
when what the last notice was about has left the queue. A cron run every ten minutes
therefore says each thing once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from string import Template
from typing import Final

from etrn_ext.core.errors import ConfigError, InvalidInputError
from etrn_ext.core.model import IntermittentDomain, NoticeKind, OutgoingMail, SentNotice
from etrn_ext.core.names import parse_domain
from etrn_ext.core.report import DomainReport, Report
from etrn_ext.core.rules import registered_domain_for
from etrn_ext.core.units import format_duration, format_size

SUBJECT_PREFIX: Final = "Subject:"


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice that is due: its kind, the domain's report and who gets it."""

    kind: NoticeKind
    report: DomainReport
    recipients: tuple[str, ...]
    unreachable: tuple[str, ...]
    covers_until: float


def waiting_threshold(domain: IntermittentDomain, waiting_after: float) -> float:
    """How long mail may wait before the site is told: a site expected to be away for two
    weeks is not told about mail that waited twelve hours."""
    return max(waiting_after, domain.expected_outage_seconds or 0.0)


def is_behind_link(address: str, registry: Mapping[str, IntermittentDomain]) -> bool:
    """Mail to ``address`` would itself be held here until the site comes back."""
    try:
        domain = parse_domain(address.rpartition("@")[2])
    except InvalidInputError:
        return False
    return registered_domain_for(domain, registry) is not None


def due_notices(
    report: Report,
    sent: Mapping[tuple[str, NoticeKind], SentNotice],
    registry: Mapping[str, IntermittentDomain],
    waiting_after: float,
) -> list[Notice]:
    """The notices to send now, given the last ones sent; domains without contacts get none."""
    due = []
    for item in report.domains:
        usage, expiring = item.usage, item.expiring
        contacts = item.domain.contacts
        if not contacts or usage.oldest_arrival is None or usage.newest_arrival is None:
            continue
        candidates = []
        waited = report.generated_at - usage.oldest_arrival
        if waited > waiting_threshold(item.domain, waiting_after):
            candidates.append((NoticeKind.WAITING, usage.oldest_arrival, usage.newest_arrival))
        if expiring.oldest_arrival is not None and expiring.newest_arrival is not None:
            candidates.append((NoticeKind.EXPIRY, expiring.oldest_arrival, expiring.newest_arrival))
        unreachable = tuple(c for c in contacts if is_behind_link(c, registry))
        reachable = tuple(c for c in contacts if c not in unreachable)
        for kind, first, last in candidates:
            previous = sent.get((item.domain.name.ascii, kind))
            if previous is None or first > previous.covers_until:
                due.append(Notice(kind, item, reachable, unreachable, last))
    return due


def utc_text(epoch: float | None) -> str:
    """A time for people anywhere: notices go to sites in other time zones."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def notice_values(notice: Notice, report: Report) -> dict[str, str]:
    """The ``$name`` placeholders a template may use (documented in etrnctl(1))."""
    item, now = notice.report, report.generated_at
    usage, expiring = item.usage, item.expiring
    return {
        "domain": item.domain.name.ascii,
        "domain_unicode": item.domain.name.unicode,
        "relay": report.node,
        "messages": str(usage.messages),
        "recipients": str(usage.recipients),
        "size": format_size(usage.bytes),
        "oldest": utc_text(usage.oldest_arrival),
        "waited": format_duration(now - (usage.oldest_arrival or now)),
        "expiring_messages": str(expiring.messages),
        "expiring_size": format_size(expiring.bytes),
        "first_expiry": utc_text(item.first_expiry),
        "expires_in": format_duration((item.first_expiry or now) - now),
        "lifetime": format_duration(report.policy.queue_lifetime_seconds),
        "window": format_duration(report.policy.expiry_warning_seconds),
        "contacts": ", ".join(notice.recipients),
    }


def render_template(text: str, values: Mapping[str, str], source: str) -> tuple[str, str]:
    """A template's subject and body with ``$name`` placeholders filled in.

    A template is a ``Subject:`` line, a blank line and the body; a misspelt
    placeholder is a configuration error naming the file, never a half-filled mail.
    """
    head, blank, body = text.partition("\n\n")
    if not blank or not head.startswith(SUBJECT_PREFIX) or "\n" in head:
        raise ConfigError("", "must start with a 'Subject:' line followed by a blank line", source)
    try:
        subject = Template(head.removeprefix(SUBJECT_PREFIX).strip()).substitute(values)
        return subject, Template(body).substitute(values)
    except KeyError as exc:
        raise ConfigError("", f"unknown placeholder ${exc.args[0]}", source) from exc
    except ValueError as exc:
        raise ConfigError("", f"bad placeholder: {exc}", source) from exc


def compose_notice(
    notice: Notice, report: Report, template: str, source: str, sender: str
) -> OutgoingMail:
    """The mail for one notice, from its template."""
    subject, body = render_template(template, notice_values(notice, report), source)
    return OutgoingMail(sender, notice.recipients, subject, body)


def digest_subject(report: Report) -> str:
    """The operator digest's subject: what matters at a glance in a mail client."""
    totals = report.totals
    held = sum(1 for item in report.domains if item.usage.messages)
    subject = f"etrn-ext {report.node}: {totals.messages} message(s) held for {held} domain(s)"
    if report.total_expiring.messages:
        subject += f", {report.total_expiring.messages} expiring"
    return subject
