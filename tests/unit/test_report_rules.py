"""The report's and notify's pure decisions: buckets, expiry, silence, notices, templates."""

from __future__ import annotations

import pytest

from etrn_ext.core.errors import ConfigError
from etrn_ext.core.model import (
    ArrivalProfile,
    DomainUsage,
    Event,
    EventKind,
    IntermittentDomain,
    NoticeKind,
    SentNotice,
)
from etrn_ext.core.names import DomainName
from etrn_ext.core.notices import (
    compose_notice,
    digest_subject,
    due_notices,
    is_behind_link,
    render_template,
)
from etrn_ext.core.report import (
    AGE_BUCKET_LABELS,
    Report,
    ReportPolicy,
    age_cutoffs,
    age_histogram,
    expiry_cutoff,
    make_report,
)

NOW = 1_800_000_000.0
HOUR = 3600.0
DAY = 86400.0
POLICY = ReportPolicy(
    queue_lifetime_seconds=5 * DAY, expiry_warning_seconds=DAY, silent_after_seconds=7 * DAY
)


def bucket_of(age_seconds: float) -> str:
    """Which label one recipient of this age lands in, through the store's arithmetic."""
    arrival = NOW - age_seconds
    before = [int(arrival <= cutoff) for cutoff in age_cutoffs(NOW)]
    [label] = [
        label for label, count in zip(AGE_BUCKET_LABELS, age_histogram(1, before), strict=True)
        if count
    ]  # fmt: skip
    return label


@pytest.mark.parametrize(
    ("age_seconds", "label"),
    [
        pytest.param(-30, "5", id="clock-behind-the-mta"),
        pytest.param(0, "5", id="just-arrived"),
        pytest.param(299.5, "5", id="just-under-5-minutes"),
        pytest.param(300, "10", id="exactly-5-minutes"),
        pytest.param(601, "20", id="10-minutes-1s"),
        pytest.param(2 * HOUR, "160", id="2h"),
        pytest.param(1279 * 60, "1280", id="1279-minutes"),
        pytest.param(1280 * 60, "1280+", id="exactly-1280-minutes"),
        pytest.param(30 * DAY, "1280+", id="a-month"),
    ],
)
def test_ages_fall_in_qshapes_buckets(age_seconds: float, label: str) -> None:
    assert bucket_of(age_seconds) == label


def test_histogram_from_cumulative_counts() -> None:
    assert age_histogram(10, [8, 8, 5, 5, 5, 5, 5, 1, 0]) == (2, 0, 3, 0, 0, 0, 0, 4, 1, 0)


def test_expiry_cutoff_is_arrival_plus_lifetime_within_the_window() -> None:
    cutoff = expiry_cutoff(NOW, 5 * DAY, DAY)
    assert cutoff == NOW - 4 * DAY  # mail 4 days old bounces within a day


def domain(name: str, **fields: object) -> IntermittentDomain:
    return IntermittentDomain(DomainName(name), created_at=NOW - 30 * DAY, **fields)  # type: ignore[arg-type]


def profile(name: str, *, oldest: float, newest: float, expiring: int = 0) -> ArrivalProfile:
    usage = DomainUsage(name, 3, 4, 3000, oldest, newest)
    early = (
        DomainUsage(name, expiring, expiring, 1000 * expiring, oldest, oldest)
        if expiring
        else DomainUsage(name)
    )
    before = [sum(1 for arrival in (oldest, newest) if arrival <= c) for c in age_cutoffs(NOW)]
    return ArrivalProfile(usage, tuple(before), early)


def etrn(name: str, at: float) -> Event:
    return Event(at, EventKind.ETRN, "relay", "192.0.2.7", "allowed", name)


def report_of(
    *entries: IntermittentDomain,
    profiles: dict[str, ArrivalProfile],
    etrns: dict[str, Event] | None = None,
) -> Report:
    return make_report(
        NOW,
        node="relay.test",
        policy=POLICY,
        registry=list(entries),
        profiles=profiles,
        etrns=etrns or {},
        flushes={},
        flush_states={},
    )


def test_report_totals_and_silence() -> None:
    report = report_of(
        domain("site.example"),
        domain("quiet.example"),
        domain("recent.example"),
        domain("away.example", expected_outage_seconds=30 * DAY),
        profiles={
            "site.example": profile(
                "site.example", oldest=NOW - 5 * DAY, newest=NOW - HOUR, expiring=1
            ),
            "stray.example": profile("stray.example", oldest=NOW - HOUR, newest=NOW - HOUR),
        },
        etrns={
            "quiet.example": etrn("quiet.example", NOW - 8 * DAY),
            "recent.example": etrn("recent.example", NOW - DAY),
            "away.example": etrn("away.example", NOW - 8 * DAY),
        },
    )
    names = [item.domain.name.ascii for item in report.domains]
    assert names == sorted(names)  # held mail of unregistered domains is reported too
    assert "stray.example" in names
    assert {item.domain.name.ascii for item in report.domains if item.silent} == {"quiet.example"}
    assert (report.totals.messages, report.totals.recipients, report.totals.bytes) == (6, 8, 6000)
    assert report.total_ages[AGE_BUCKET_LABELS.index("1280+")] == 1
    assert report.first_expiry == NOW - 5 * DAY + POLICY.queue_lifetime_seconds
    assert digest_subject(report) == (
        "etrn-ext relay.test: 6 message(s) held for 2 domain(s), 1 expiring"
    )


REGISTRY = {
    "site.example": domain("site.example", contacts=("ops@isp.example",)),
    "ship.example": domain(
        "ship.example", contacts=("bridge@ship.example",), include_subdomains=True
    ),
}


def test_a_contact_inside_a_held_domain_is_behind_the_link() -> None:
    assert is_behind_link("bridge@ship.example", REGISTRY)
    assert is_behind_link("ops@mx.ship.example", REGISTRY)
    assert not is_behind_link("ops@isp.example", REGISTRY)
    assert not is_behind_link("garbage", REGISTRY)


def test_notices_are_due_once_per_wave_of_mail() -> None:
    site = domain("site.example", contacts=("ops@isp.example",))
    away = domain("away.example", contacts=("ops@isp.example",), expected_outage_seconds=20 * DAY)
    report = report_of(
        site,
        away,
        profiles={
            "site.example": profile(
                "site.example", oldest=NOW - 5 * DAY, newest=NOW - DAY, expiring=1
            ),
            "away.example": profile("away.example", oldest=NOW - 2 * DAY, newest=NOW - DAY),
        },
    )
    due = due_notices(report, {}, REGISTRY, waiting_after=12 * HOUR)
    assert [(n.report.domain.name.ascii, n.kind) for n in due] == [
        ("site.example", NoticeKind.WAITING),
        ("site.example", NoticeKind.EXPIRY),
    ]  # away.example is expected to be gone for 20 days
    assert due[0].covers_until == NOW - DAY
    assert due[1].covers_until == NOW - 5 * DAY

    def sent(kind: NoticeKind, covers_until: float) -> SentNotice:
        return SentNotice("site.example", kind, NOW, covers_until, ("ops@isp.example",))

    told = {(n.report.domain.name.ascii, n.kind): sent(n.kind, n.covers_until) for n in due}
    assert due_notices(report, told, REGISTRY, waiting_after=12 * HOUR) == []
    # Everything told about has gone; what waits now arrived after it: a new wave.
    told[("site.example", NoticeKind.WAITING)] = sent(NoticeKind.WAITING, NOW - 6 * DAY)
    assert [n.kind for n in due_notices(report, told, REGISTRY, 12 * HOUR)] == [NoticeKind.WAITING]


def test_unreachable_contacts_are_set_apart() -> None:
    ship = domain("ship.example", contacts=("bridge@ship.example", "ops@isp.example"))
    report = report_of(
        ship, profiles={"ship.example": profile("ship.example", oldest=NOW - DAY, newest=NOW)}
    )
    [notice] = due_notices(report, {}, REGISTRY, waiting_after=HOUR)
    assert (notice.recipients, notice.unreachable) == (
        ("ops@isp.example",),
        ("bridge@ship.example",),
    )


def test_templates_fill_in_and_refuse_mistakes() -> None:
    site = domain("site.example", contacts=("ops@isp.example",))
    report = report_of(
        site, profiles={"site.example": profile("site.example", oldest=NOW - DAY, newest=NOW)}
    )
    [notice] = due_notices(report, {}, REGISTRY, waiting_after=HOUR)
    mail = compose_notice(
        notice, report, "Subject: $messages for $domain\n\nsince $oldest, $$5\n", "t.txt", "a@b.c"
    )
    assert (mail.subject, mail.recipients) == ("3 for site.example", ("ops@isp.example",))
    assert mail.text == "since 2027-01-14 08:00 UTC, $5\n"
    with pytest.raises(ConfigError, match=r"t.txt: unknown placeholder \$mesages"):
        render_template("Subject: x\n\n$mesages\n", {}, "t.txt")
    with pytest.raises(ConfigError, match="Subject:"):
        render_template("no subject\n", {}, "t.txt")
