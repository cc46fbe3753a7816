"""Reports and notices: what is held, for whom, how old, what will bounce; and telling
the sites (notify) and the relay's admins (the digest) by mail."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from etrn_ext.core.errors import ConfigError, MailSubmissionError, UnknownDomainError
from etrn_ext.core.model import Event, EventKind, NoticeKind, OutgoingMail, SentNotice
from etrn_ext.core.names import parse_domain, parse_mailbox
from etrn_ext.core.notices import Notice, compose_notice, digest_subject, due_notices
from etrn_ext.core.report import (
    Report,
    ReportPolicy,
    age_cutoffs,
    expiry_cutoff,
    make_report,
    queue_ids_of,
)
from etrn_ext.net.notify import MailSubmitter
from etrn_ext.service.context import Context
from etrn_ext.service.sync import sync

log = logging.getLogger(__name__)

TEMPLATE_FILES: Final = {NoticeKind.WAITING: "waiting.txt", NoticeKind.EXPIRY: "expiry.txt"}


def build_report(ctx: Context, domain: str | None = None, *, sync_first: bool = True) -> Report:
    """The report from the index, after a sync unless told otherwise.

    An unknown ``domain`` fails before the MTA or the index is changed.
    """
    only = parse_domain(domain) if domain else None
    entry = ctx.store.get_domain(only) if only else None
    if only and entry is None:
        raise UnknownDomainError(only.ascii)
    if sync_first:
        sync(ctx)
    registry = [entry] if entry else ctx.store.list_domains()
    settings = ctx.settings.report
    policy = ReportPolicy(
        queue_lifetime_seconds=ctx.mta.queue_lifetime_seconds(),
        expiry_warning_seconds=settings.expiry_warning_seconds,
        silent_after_seconds=settings.silent_after_seconds,
    )
    now = ctx.clock()
    profiles = ctx.store.arrival_profile(
        age_cutoffs(now),
        expiry_cutoff(now, policy.queue_lifetime_seconds, policy.expiry_warning_seconds),
        only,
    )
    flushes = ctx.store.latest_events(EventKind.FLUSH, only)
    flushed = {queue_id for event in flushes.values() for queue_id in queue_ids_of(event)}
    return make_report(
        now,
        node=ctx.node,
        policy=policy,
        registry=registry,
        profiles=profiles,
        etrns=ctx.store.latest_events(EventKind.ETRN, only),
        flushes=flushes,
        flush_states=ctx.store.recipient_states(flushed),
        held_elsewhere=only is None,
    )


def sender_address(ctx: Context) -> str:
    return ctx.settings.report.from_address or f"postmaster@{ctx.node}"


def _submitter(ctx: Context) -> MailSubmitter:
    settings = ctx.settings.report
    return MailSubmitter(
        settings.submission_host,
        settings.submission_port,
        timeout=settings.submission_timeout_seconds,
        local_hostname=ctx.node,
    )


def load_template(ctx: Context, kind: NoticeKind) -> tuple[str, str]:
    """A notice template and where it came from: the admin's file, else the built-in one."""
    name = TEMPLATE_FILES[kind]
    override = Path(ctx.settings.report.template_directory) / name
    try:
        return override.read_text(encoding="utf-8"), str(override)
    except FileNotFoundError:
        pass
    except (OSError, UnicodeError) as exc:
        raise ConfigError("report.template_directory", f"cannot read {override}: {exc}") from exc
    builtin = resources.files("etrn_ext").joinpath("templates", name)
    return builtin.read_text(encoding="utf-8"), f"built-in {name}"


@dataclass(frozen=True, slots=True)
class NoticeMail:
    """A due notice and the mail that says it."""

    notice: Notice
    mail: OutgoingMail


@dataclass(frozen=True, slots=True)
class NoticePlan:
    """The notices due now: as mails, and those that no contact outside the site can get."""

    mails: list[NoticeMail]
    unsendable: list[Notice]


def plan_notices(ctx: Context, *, sync_first: bool = True) -> NoticePlan:
    """The notices due now, as mails; nothing is sent or remembered."""
    report = build_report(ctx, sync_first=sync_first)
    # Every domain whose mail is held here, registered or not: contacts there are unreachable.
    registry = {item.domain.name.ascii: item.domain for item in report.domains}
    due = due_notices(
        report, ctx.store.notices_sent(), registry, ctx.settings.report.waiting_after_seconds
    )
    plan = NoticePlan([], [])
    for notice in due:
        name = notice.report.domain.name.ascii
        for address in notice.unreachable:
            log.warning(
                "%s: contact %s is behind the site's own link (its mail is held here); not used",
                name,
                address,
            )
        if not notice.recipients:
            log.warning("%s: no contact outside the site; %s notice not sent", name, notice.kind)
            plan.unsendable.append(notice)
            continue
        template, source = load_template(ctx, notice.kind)
        mail = compose_notice(notice, report, template, source, sender_address(ctx))
        plan.mails.append(NoticeMail(notice, mail))
    return plan


def send_notices(ctx: Context, plan: NoticePlan) -> list[NoticeMail]:
    """Send the planned notices over one SMTP session, remembering each once it is handed
    over; returns those accepted for a recipient at least. A notice that no contact can
    get (all behind the link, or refused for good) is remembered too, so that cron warns
    about it once, not every run.

    A notice refused for now (4xx) for every recipient is tried again on the next run,
    as is the rest when the submission host fails; what was sent before stays remembered.
    """
    for notice in plan.unsendable:
        _remember(ctx, notice, (), {"unsent": "every contact is behind the site's own link"})
    if not plan.mails:
        return []
    sent = []
    with _submitter(ctx).session() as send:
        for item in plan.mails:
            refused = send(item.mail)
            domain, kind = item.notice.report.domain.name.ascii, item.notice.kind
            accepted = tuple(r for r in item.mail.recipients if r not in refused)
            for address, code in refused.items():
                log.warning("%s: %s notice to %s refused (%d)", domain, kind, address, code)
            if not accepted and any(400 <= code < 500 for code in refused.values()):
                log.warning("%s: %s notice refused for now; tried again next run", domain, kind)
                continue
            _remember(
                ctx, item.notice, accepted, {"subject": item.mail.subject, "refused": [*refused]}
            )
            if accepted:
                log.info("%s: %s notice sent to %s", domain, kind, ", ".join(accepted))
                sent.append(item)
    return sent


def _remember(
    ctx: Context, notice: Notice, accepted: tuple[str, ...], detail: Mapping[str, object]
) -> None:
    now = ctx.clock()
    domain = notice.report.domain.name.ascii
    detail = {
        "messages": notice.report.usage.messages,
        "expiring": notice.report.expiring.messages,
        **detail,
    }
    ctx.store.record_notice(
        SentNotice(domain, notice.kind, now, notice.covers_until, accepted, detail),
        Event(
            at=now,
            kind=EventKind.NOTICE,
            node=ctx.node,
            actor=ctx.actor,
            outcome=notice.kind.value,
            domain=domain,
            detail={"to": list(accepted), **detail},
        ),
    )


def digest_recipients(texts: tuple[str, ...]) -> tuple[str, ...]:
    """The operator digest's addresses, checked before any work is done."""
    return tuple(parse_mailbox(text) for text in texts)


def mail_report(
    ctx: Context, report: Report, recipients: tuple[str, ...], text: str, html: str
) -> OutgoingMail:
    """Send the operator digest: the text report with the HTML one as an alternative."""
    mail = OutgoingMail(sender_address(ctx), recipients, digest_subject(report), text, html)
    submitter = _submitter(ctx)
    with submitter.session() as send:
        refused = send(mail)
    for address, code in refused.items():
        log.warning("report to %s refused (%d)", address, code)
    if len(refused) == len(recipients):
        raise MailSubmissionError(submitter.host, submitter.port, "every recipient was refused")
    return mail
