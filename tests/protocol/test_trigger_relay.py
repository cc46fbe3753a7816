"""etrnctl trigger's use case against fake relays (aiosmtpd with a scripted ETRN) on loopback.

Every RFC 1985 reply, STARTTLS required and opportunistic with a test CA, AUTH, a relay
that does not advertise ETRN, timeouts, and retries that stay within the deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path

import dns.resolver
import pytest

from etrn_ext.core.errors import ConfigError
from etrn_ext.core.trigger import Relay, SessionFailure, Stage, Status, Summary
from etrn_ext.net.etrn_client import ClientOptions, ask_relay
from etrn_ext.net.resolve import CachingResolver
from etrn_ext.service.context import Context
from etrn_ext.service.trigger import Network, TriggerRequest, TriggerResult, trigger
from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.testing.relay import EtrnRelay, Slow
from etrn_ext.testing.tls import TestCa

MakeRelay = Callable[..., EtrnRelay]
SiteContext = Callable[..., Context]

# No name is ever looked up here: every relay is an address literal.
OFFLINE = Network(
    CachingResolver(timeout=1, cache_seconds=1, resolver=dns.resolver.Resolver(configure=False))
)


def run(ctx: Context, relays: list[EtrnRelay], *targets: str, **request: object) -> TriggerResult:
    return trigger(
        ctx,
        TriggerRequest(
            targets=targets or ("site.example",),
            relays=tuple(f"{relay.address}:{relay.port}" for relay in relays),
            **request,  # type: ignore[arg-type]
        ),
        OFFLINE,
    )


# --- every reply ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "status", "pending"),
    [
        pytest.param(
            "250 OK, queuing for node site.example started", Status.FLUSHED, None, id="250"
        ),
        pytest.param(
            "251 OK, no messages waiting for node site.example",
            Status.NOTHING_WAITING,
            None,
            id="251",
        ),
        pytest.param(
            "252 OK, pending messages for node site.example started",
            Status.FLUSHED,
            None,
            id="252",
        ),
        pytest.param(
            "253 OK, 7 pending messages for node site.example started",
            Status.FLUSHED,
            7,
            id="253",
        ),
        pytest.param(
            "458 Unable to queue messages for node site.example",
            Status.TEMPORARY,
            None,
            id="458",
        ),
        pytest.param(
            "459 Node site.example not allowed: not a client of ours",
            Status.REFUSED,
            None,
            id="459",
        ),
        pytest.param("500 Syntax Error", Status.REFUSED, None, id="500"),
        pytest.param("501 Syntax Error in Parameters", Status.REFUSED, None, id="501"),
        pytest.param("502 5.5.1 Command not implemented", Status.REFUSED, None, id="502"),
        pytest.param(
            "554 5.7.1 <site.example>: Client host rejected: Access denied",
            Status.REFUSED,
            None,
            id="554",
        ),
        pytest.param("421 4.3.2 Service shutting down", Status.TEMPORARY, None, id="421"),
    ],
)
def test_every_reply(
    make_etrn_relay: MakeRelay,
    site_context: SiteContext,
    reply: str,
    status: Status,
    pending: int | None,
) -> None:
    relay = make_etrn_relay(replies={"site.example": [reply]})
    started = time.monotonic()
    result = run(site_context(deadline_seconds=0.5), [relay])
    elapsed = time.monotonic() - started
    [outcome] = result.outcomes
    assert (outcome.status, outcome.code, outcome.reply) == (status, int(reply[:3]), reply)
    assert outcome.pending_messages == pending
    assert outcome.address == relay.address
    assert outcome.relay == f"{relay.address}:{relay.port}"
    assert [seen.argument for seen in relay.seen] == ["site.example"] * outcome.attempts
    assert relay.seen[0].helo == "mx.site.test"
    if status is Status.TEMPORARY:
        assert outcome.attempts > 1  # retried with backoff...
        assert elapsed < 0.5 + 0.5  # ...but no new try after the deadline
    else:
        assert outcome.attempts == 1
        assert elapsed < 0.5


def test_one_session_asks_for_every_target_in_its_form(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    relay = make_etrn_relay(
        replies={"@site.example": ["252 OK, pending messages started"], "#site-q": ["251 none"]}
    )
    result = run(site_context(), [relay], "site.example", "@site.example", "#site-q")
    assert [(o.target, o.status) for o in result.outcomes] == [
        ("site.example", Status.FLUSHED),
        ("@site.example", Status.FLUSHED),
        ("#site-q", Status.NOTHING_WAITING),
    ]
    assert [seen.argument for seen in relay.seen] == ["site.example", "@site.example", "#site-q"]
    assert result.summary is Summary.FLUSHED


def test_each_relay_is_asked(make_etrn_relay: MakeRelay, site_context: SiteContext) -> None:
    first = make_etrn_relay()
    second = make_etrn_relay(replies={"*": ["459 Node site.example not allowed"]})
    result = run(site_context(), [first, second])
    assert [(o.address, o.status) for o in result.outcomes] == [
        (first.address, Status.FLUSHED),
        (second.address, Status.REFUSED),
    ]
    assert result.summary is Summary.REFUSED


# --- retries within the deadline ---------------------------------------------------------------------


def test_temporary_failures_are_retried_until_one_succeeds(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    relay = make_etrn_relay(
        replies={"*": ["458 Unable to queue messages", "458 Unable to queue messages", "250 OK"]}
    )
    result = run(site_context(deadline_seconds=5.0), [relay])
    [outcome] = result.outcomes
    assert (outcome.status, outcome.attempts, outcome.reply) == (Status.FLUSHED, 3, "250 OK")
    assert result.summary is Summary.FLUSHED


def test_a_reply_slower_than_the_timeout_is_retried(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    relay = make_etrn_relay(replies={"*": [Slow(3.0), "250 OK"]})
    started = time.monotonic()
    result = run(site_context(timeout_seconds=0.3, deadline_seconds=2.0), [relay])
    [outcome] = result.outcomes
    assert (outcome.status, outcome.attempts) == (Status.FLUSHED, 2)
    assert time.monotonic() - started < 2.0


def test_a_relay_that_never_answers_in_time_ends_temporary_at_the_deadline(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    relay = make_etrn_relay(replies={"*": [Slow(5.0)]})
    started = time.monotonic()
    result = run(site_context(timeout_seconds=0.3, deadline_seconds=1.0), [relay])
    [outcome] = result.outcomes
    assert outcome.status is Status.TEMPORARY
    assert "timed out" in outcome.reply
    assert outcome.attempts >= 2
    assert time.monotonic() - started < 1.0 + 0.3 + 0.5
    assert result.summary is Summary.PARTIAL


def test_slow_steps_of_one_session_cannot_stretch_the_run_past_its_deadline(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    # Each ETRN is answered within the timeout, but four of them take longer than the run.
    relay = make_etrn_relay(replies={"*": [Slow(0.25, "250 OK")]})
    started = time.monotonic()
    targets = ("a.example", "b.example", "c.example", "d.example")
    result = run(site_context(timeout_seconds=0.3, deadline_seconds=0.6), [relay], *targets)
    assert time.monotonic() - started < 0.6 + 0.3
    statuses = [outcome.status for outcome in result.outcomes]
    assert statuses[:2] == [Status.FLUSHED, Status.FLUSHED]
    assert Status.TEMPORARY in statuses[2:]


def test_an_unreachable_relay_is_retried_until_it_comes_up(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    address = free_loopback_address((2525,))
    relay = EtrnRelay(address, 2525)
    timer = threading.Timer(0.4, relay.start)
    timer.start()
    try:
        result = run(site_context(deadline_seconds=5.0, retry_initial_seconds=0.1), [relay])
    finally:
        timer.join()
        relay.stop()
    [outcome] = result.outcomes
    assert outcome.status is Status.FLUSHED
    assert outcome.attempts >= 2


def test_nothing_listening_is_unreachable(site_context: SiteContext) -> None:
    nobody = EtrnRelay(free_loopback_address((2525,)), 2525)  # never started
    started = time.monotonic()
    result = run(site_context(deadline_seconds=0.5), [nobody])
    [outcome] = result.outcomes
    assert outcome.status is Status.UNREACHABLE
    assert "Connection refused" in outcome.reply
    assert outcome.attempts > 1
    assert time.monotonic() - started < 1.0
    assert result.summary is Summary.UNREACHABLE


# --- STARTTLS -----------------------------------------------------------------------------------------


def test_required_tls_with_the_relays_ca(
    make_etrn_relay: MakeRelay, site_context: SiteContext, test_ca: TestCa
) -> None:
    relay = make_etrn_relay(tls=True)
    result = run(site_context(tls="required", tls_ca_file=str(test_ca.ca_file)), [relay])
    [outcome] = result.outcomes
    assert (outcome.status, outcome.encrypted) == (Status.FLUSHED, True)
    assert relay.seen[0].tls


def test_required_tls_refuses_a_relay_without_starttls(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    relay = make_etrn_relay()
    result = run(site_context(), [relay], tls="required")
    [outcome] = result.outcomes
    assert (outcome.status, outcome.attempts) == (Status.REFUSED, 1)
    assert outcome.reply == "STARTTLS required but not offered by the relay"
    assert relay.seen == []


def test_opportunistic_tls_uses_it_when_offered_and_goes_plain_otherwise(
    make_etrn_relay: MakeRelay, site_context: SiteContext, test_ca: TestCa
) -> None:
    with_tls = make_etrn_relay(tls=True)
    plain = make_etrn_relay()
    ctx = site_context(tls="opportunistic", tls_ca_file=str(test_ca.ca_file))
    result = run(ctx, [with_tls, plain])
    assert [(o.status, o.encrypted) for o in result.outcomes] == [
        (Status.FLUSHED, True),
        (Status.FLUSHED, False),
    ]
    assert [with_tls.seen[0].tls, plain.seen[0].tls] == [True, False]


def test_opportunistic_tls_goes_plain_when_the_relay_refuses_starttls(
    make_etrn_relay: MakeRelay, site_context: SiteContext, test_ca: TestCa
) -> None:
    relay = make_etrn_relay(tls=True, starttls_reply="454 4.7.0 TLS not available")
    ctx = site_context(tls_ca_file=str(test_ca.ca_file))
    [outcome] = run(ctx, [relay], tls="opportunistic").outcomes
    assert (outcome.status, outcome.encrypted, relay.seen[0].tls) == (Status.FLUSHED, False, False)
    [required] = run(ctx, [relay], tls="required", deadline_seconds=0.5).outcomes
    assert (required.status, required.code) == (Status.TEMPORARY, 454)
    assert len(relay.seen) == 1


def test_a_dropped_tls_handshake_is_temporary_and_retried(
    make_etrn_relay: MakeRelay, site_context: SiteContext, test_ca: TestCa
) -> None:
    relay = make_etrn_relay(tls=True, starttls_reply="220 2.0.0 Ready to start TLS")
    ctx = site_context(tls_ca_file=str(test_ca.ca_file), retry_initial_seconds=0.1)
    [outcome] = run(ctx, [relay], tls="required", deadline_seconds=1.0).outcomes
    assert outcome.status is Status.TEMPORARY
    assert outcome.attempts > 1
    assert relay.seen == []


def test_a_certificate_from_an_unknown_ca_is_refused_not_downgraded(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    relay = make_etrn_relay(tls=True)
    result = run(site_context(tls="opportunistic"), [relay])  # the system's CAs only
    [outcome] = result.outcomes
    assert (outcome.status, outcome.attempts) == (Status.REFUSED, 1)
    assert outcome.reply.startswith("certificate verification failed")
    assert relay.seen == []


def test_the_certificate_must_name_the_relay(site_context: SiteContext, test_ca: TestCa) -> None:
    address = free_loopback_address((2525,))
    context = test_ca.server_context(["other.test"])  # not the address we dial
    with EtrnRelay(address, 2525, tls_context=context) as relay:
        result = run(site_context(tls_ca_file=str(test_ca.ca_file)), [relay])
    [outcome] = result.outcomes
    assert outcome.status is Status.REFUSED
    assert "mismatch" in outcome.reply


def test_verification_can_be_turned_off_and_tls_can_be_off(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    relay = make_etrn_relay(tls=True)
    unverified = run(site_context(), [relay], tls="required", tls_verify=False)
    assert [(o.status, o.encrypted) for o in unverified.outcomes] == [(Status.FLUSHED, True)]
    off = run(site_context(), [relay], tls="off")
    assert [(o.status, o.encrypted) for o in off.outcomes] == [(Status.FLUSHED, False)]


# --- AUTH ---------------------------------------------------------------------------------------------


def write_auth_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "relay-credentials"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_auth_inside_tls(
    make_etrn_relay: MakeRelay, site_context: SiteContext, test_ca: TestCa, tmp_path: Path
) -> None:
    relay = make_etrn_relay(tls=True, credentials={"site": "s3cret"})
    auth_file = write_auth_file(tmp_path, f"{relay.address}:{relay.port} site:s3cret\n")
    ctx = site_context(auth_file=str(auth_file), tls_ca_file=str(test_ca.ca_file))
    [outcome] = run(ctx, [relay]).outcomes
    assert (outcome.status, outcome.encrypted) == (Status.FLUSHED, True)
    assert relay.seen[0].login == "site"


def test_a_wrong_password_is_refused_once(
    make_etrn_relay: MakeRelay, site_context: SiteContext, test_ca: TestCa, tmp_path: Path
) -> None:
    relay = make_etrn_relay(tls=True, credentials={"site": "s3cret"})
    auth_file = write_auth_file(tmp_path, "* site:wrong\n")
    ctx = site_context(auth_file=str(auth_file), tls_ca_file=str(test_ca.ca_file))
    [outcome] = run(ctx, [relay]).outcomes
    assert (outcome.status, outcome.attempts, outcome.code) == (Status.REFUSED, 1, 535)
    assert outcome.reply == "535 5.7.8 Authentication credentials invalid"
    assert "wrong" not in outcome.reply


def test_credentials_are_never_sent_in_clear(
    make_etrn_relay: MakeRelay, site_context: SiteContext, tmp_path: Path
) -> None:
    relay = make_etrn_relay(credentials={"site": "s3cret"})  # no STARTTLS, so no AUTH either
    auth_file = write_auth_file(tmp_path, "* site:s3cret\n")
    [outcome] = run(site_context(auth_file=str(auth_file)), [relay]).outcomes
    assert outcome.status is Status.REFUSED
    assert "not encrypted" in outcome.reply
    assert relay.seen == []


def test_a_relay_that_wants_auth_refuses_without_it(
    make_etrn_relay: MakeRelay, site_context: SiteContext, test_ca: TestCa
) -> None:
    relay = make_etrn_relay(tls=True, credentials={"site": "s3cret"})
    [outcome] = run(site_context(tls_ca_file=str(test_ca.ca_file)), [relay]).outcomes
    assert (outcome.status, outcome.code) == (Status.REFUSED, 530)


def test_the_credentials_file_must_be_private(
    make_etrn_relay: MakeRelay, site_context: SiteContext, tmp_path: Path
) -> None:
    relay = make_etrn_relay()
    auth_file = write_auth_file(tmp_path, "* site:s3cret\n", mode=0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        run(site_context(auth_file=str(auth_file)), [relay])
    assert relay.seen == []


# --- ETRN not offered ---------------------------------------------------------------------------------


def test_a_relay_that_does_not_advertise_etrn(
    make_etrn_relay: MakeRelay, site_context: SiteContext
) -> None:
    relay = make_etrn_relay(advertise_etrn=False)
    [outcome] = run(site_context(), [relay]).outcomes
    assert (outcome.status, outcome.attempts) == (Status.REFUSED, 1)
    assert outcome.reply == "the relay does not advertise ETRN"
    assert relay.seen == []


def test_no_address_is_dialled_after_the_deadline(make_etrn_relay: MakeRelay) -> None:
    relay = make_etrn_relay()
    options = ClientOptions(helo_name="site.test", timeout=1.0)
    target = Relay(relay.address, relay.port)
    late = ask_relay(target, [ip_address(relay.address)], ["site.example"], options, lambda: 0.0)
    assert (late.dialled, late.failure) == (
        False,
        SessionFailure(Stage.CONNECT, "the run's deadline passed"),
    )
    assert relay.seen == []
