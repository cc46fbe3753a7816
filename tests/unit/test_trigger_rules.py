"""The site's decisions for etrnctl trigger: targets, relays, replies, retries, credentials."""

from __future__ import annotations

import ipaddress

import pytest

from etrn_ext.core.errors import InvalidInputError
from etrn_ext.core.trigger import (
    Credentials,
    EtrnReply,
    EtrnTarget,
    LocalIdentity,
    Relay,
    RelayChoice,
    SessionFailure,
    Stage,
    Status,
    Summary,
    TlsPolicy,
    TriggerOutcome,
    auth_failure,
    backoff_seconds,
    choose_relays,
    connection_order,
    credentials_for,
    etrn_failure,
    next_retry_seconds,
    no_relay_reason,
    outcome_line,
    parse_credentials,
    parse_relay,
    parse_relays,
    parse_target,
    parse_targets,
    status_for_failure,
    status_for_reply,
    summarize,
    tls_failure,
    wants_starttls,
)
from etrn_ext.wire.etrn import decode_reply

ip = ipaddress.ip_address

# --- targets and relays -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "argument", "domain"),
    [
        pytest.param("Site.Example.", "site.example", "site.example", id="domain"),
        pytest.param("@site.example", "@site.example", "site.example", id="subdomains"),
        pytest.param("#site-queue_1.x", "#site-queue_1.x", None, id="queue"),
        pytest.param("bücher.example", "xn--bcher-kva.example", "xn--bcher-kva.example", id="idn"),
    ],
)
def test_targets_in_the_three_rfc1985_forms(text: str, argument: str, domain: str | None) -> None:
    target = parse_target(text)
    assert target.argument == argument
    assert (str(target.domain) if target.domain else None) == domain


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("-qsite.example", id="option-like"),
        pytest.param("site.example\r\nQUIT", id="command-injection"),
        pytest.param("@", id="bare-at"),
        pytest.param("#", id="bare-hash"),
        pytest.param("#a b", id="queue-space"),
        pytest.param("#-x", id="queue-dash"),
    ],
)
def test_targets_that_could_extend_the_command_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_target(text)


def test_target_lists_keep_order_and_drop_repeats() -> None:
    assert parse_targets(" a.example, @b.example  a.example,#q ") == (
        EtrnTarget("a.example"),
        EtrnTarget("@b.example"),
        EtrnTarget("#q"),
    )


@pytest.mark.parametrize(
    ("text", "relay", "shown"),
    [
        pytest.param(
            "MX1.isp.example", Relay("mx1.isp.example", 25), "mx1.isp.example:25", id="host"
        ),
        pytest.param(
            "mx1.isp.example:587", Relay("mx1.isp.example", 587), "mx1.isp.example:587", id="port"
        ),
        pytest.param("192.0.2.1:26", Relay("192.0.2.1", 26), "192.0.2.1:26", id="v4"),
        pytest.param(
            "[2001:db8::1]:26", Relay("2001:db8::1", 26), "[2001:db8::1]:26", id="v6-port"
        ),
        pytest.param("2001:db8::1", Relay("2001:db8::1", 25), "[2001:db8::1]:25", id="v6-bare"),
        pytest.param(
            "[2001:DB8::1]", Relay("2001:db8::1", 25), "[2001:db8::1]:25", id="v6-brackets"
        ),
    ],
)
def test_relays(text: str, relay: Relay, shown: str) -> None:
    assert parse_relay(text) == relay
    assert str(relay) == shown
    assert parse_relay(shown) == relay


@pytest.mark.parametrize(
    "text", ["mx:0", "mx:70000", "mx:", "mx:x", "[2001:db8::1", "[::1]x", "-mx.example", "a b"]
)
def test_bad_relays(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_relay(text)


def test_relay_lists_use_the_default_port() -> None:
    assert parse_relays("a.example, b.example:2525", 587) == (
        Relay("a.example", 587),
        Relay("b.example", 2525),
    )


SITE_V4 = ip("192.0.2.10")
RELAY_V4 = ip("198.51.100.1")
RELAY_V6 = ip("2001:db8::1")


def test_every_mx_but_this_host_by_preference_then_name() -> None:
    mx = [
        (30, "c.isp.example"),
        (10, "MX.site.example."),
        (20, "b.isp.example"),
        (20, "a.isp.example"),
    ]
    addresses = {"mx.site.example": [SITE_V4], "a.isp.example": [RELAY_V4]}
    choice = choose_relays(mx, addresses, LocalIdentity(frozenset({"mx.site.example"})))
    assert choice.relays == ("a.isp.example", "b.isp.example", "c.isp.example")
    assert choice.this_host == ("mx.site.example",)


def test_an_mx_with_one_of_our_addresses_is_this_host() -> None:
    mx = [(10, "gw.site.example"), (20, "relay.isp.example")]
    addresses = {"gw.site.example": [RELAY_V6, SITE_V4], "relay.isp.example": [RELAY_V4]}
    choice = choose_relays(mx, addresses, LocalIdentity(addresses=frozenset({SITE_V4})))
    assert choice.relays == ("relay.isp.example",)
    assert choice.this_host == ("gw.site.example",)


def test_null_mx_and_repeats_are_skipped() -> None:
    assert choose_relays(
        [(0, ""), (5, "a.example"), (9, "a.example")], {}, LocalIdentity()
    ).relays == ("a.example",)


def test_ipv6_first_then_ipv4() -> None:
    assert connection_order([ip("192.0.2.2"), ip("2001:db8::2"), ip("192.0.2.1"), RELAY_V6]) == (
        RELAY_V6,
        ip("2001:db8::2"),
        ip("192.0.2.1"),
        ip("192.0.2.2"),
    )


# --- replies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        pytest.param(EtrnReply.STARTED, Status.FLUSHED, id="250"),
        pytest.param(EtrnReply.NO_MESSAGES, Status.NOTHING_WAITING, id="251"),
        pytest.param(EtrnReply.PENDING_STARTED, Status.FLUSHED, id="252"),
        pytest.param(EtrnReply.PENDING_COUNT, Status.FLUSHED, id="253"),
        pytest.param(EtrnReply.UNABLE, Status.TEMPORARY, id="458"),
        pytest.param(EtrnReply.NOT_ALLOWED, Status.REFUSED, id="459"),
        pytest.param(EtrnReply.SYNTAX_ERROR, Status.REFUSED, id="500"),
        pytest.param(EtrnReply.PARAMETER_ERROR, Status.REFUSED, id="501"),
        pytest.param(EtrnReply.NOT_IMPLEMENTED, Status.REFUSED, id="502"),
        pytest.param(554, Status.REFUSED, id="554"),
        pytest.param(421, Status.TEMPORARY, id="421"),
        pytest.param(450, Status.TEMPORARY, id="450"),
        pytest.param(530, Status.REFUSED, id="530-auth-required"),
        pytest.param(299, Status.FLUSHED, id="unnamed-2xx"),
        pytest.param(354, Status.REFUSED, id="nonsense-3xx"),
    ],
)
def test_every_reply_code(code: int, status: Status) -> None:
    assert status_for_reply(code) is status


@pytest.mark.parametrize(
    ("text", "count"),
    [
        pytest.param("OK, 12 pending messages for node site.example started", 12, id="rfc"),
        pytest.param("2.0.0 OK, 3 pending messages for node x started", 3, id="enhanced"),
        pytest.param("OK, pending messages started", None, id="no-number"),
    ],
)
def test_the_count_of_a_253(text: str, count: int | None) -> None:
    assert decode_reply(253, text.encode()).pending_messages == count
    assert decode_reply(250, text.encode()).pending_messages is None


def test_relay_text_cannot_forge_log_lines() -> None:
    answer = decode_reply(250, b"OK\r\n250-injected\x1b[31m \xff")
    assert str(answer) == "250 OK 250-injected?[31m \ufffd"


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        pytest.param(SessionFailure(Stage.CONNECT, "refused"), Status.UNREACHABLE, id="connect"),
        pytest.param(SessionFailure(Stage.GREETING, "421 busy", 421), Status.TEMPORARY, id="421"),
        pytest.param(SessionFailure(Stage.GREETING, "554 go", 554), Status.REFUSED, id="554"),
        pytest.param(SessionFailure(Stage.ETRN, "timed out"), Status.TEMPORARY, id="timeout"),
        pytest.param(SessionFailure(Stage.AUTH, "454", 454), Status.TEMPORARY, id="auth-454"),
        pytest.param(SessionFailure(Stage.AUTH, "535", 535), Status.REFUSED, id="auth-535"),
        pytest.param(
            SessionFailure(Stage.STARTTLS, "cert", final=True), Status.REFUSED, id="final"
        ),
    ],
)
def test_session_failures(failure: SessionFailure, status: Status) -> None:
    assert status_for_failure(failure) is status


def test_tls_policy() -> None:
    assert tls_failure(TlsPolicy.REQUIRED, offered=False) is not None
    assert tls_failure(TlsPolicy.REQUIRED, offered=True) is None
    assert tls_failure(TlsPolicy.OPPORTUNISTIC, offered=False) is None
    assert wants_starttls(TlsPolicy.OPPORTUNISTIC, offered=True)
    assert not wants_starttls(TlsPolicy.OFF, offered=True)
    assert not wants_starttls(TlsPolicy.REQUIRED, offered=False)


def test_credentials_only_inside_tls_and_only_where_offered() -> None:
    plain = auth_failure(encrypted=False, advertised=True)
    assert plain is not None
    assert plain.final
    assert "not encrypted" in plain.text
    assert auth_failure(encrypted=True, advertised=False) is not None
    assert auth_failure(encrypted=True, advertised=True) is None
    assert etrn_failure(advertised=False) is not None
    assert etrn_failure(advertised=True) is None


@pytest.mark.parametrize(
    ("statuses", "summary"),
    [
        pytest.param([Status.FLUSHED, Status.NOTHING_WAITING], Summary.FLUSHED, id="all"),
        pytest.param([Status.FLUSHED, Status.TEMPORARY], Summary.PARTIAL, id="temporary"),
        pytest.param([Status.FLUSHED, Status.UNREACHABLE], Summary.PARTIAL, id="one-down"),
        pytest.param([Status.FLUSHED, Status.NO_RELAY], Summary.PARTIAL, id="one-no-relay"),
        pytest.param([Status.TEMPORARY, Status.REFUSED], Summary.REFUSED, id="refused-wins"),
        pytest.param([Status.UNREACHABLE, Status.NO_RELAY], Summary.UNREACHABLE, id="none"),
        pytest.param([Status.UNREACHABLE, Status.TEMPORARY], Summary.PARTIAL, id="one-answered"),
    ],
)
def test_summary(statuses: list[Status], summary: Summary) -> None:
    assert summarize(statuses) is summary


# --- retries --------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_half_of_it_random() -> None:
    fixed = [backoff_seconds(n, 0.0, initial=5, maximum=60) for n in range(1, 7)]
    assert fixed == [2.5, 5.0, 10.0, 20.0, 30.0, 30.0]
    top = [backoff_seconds(n, 0.999999, initial=5, maximum=60) for n in range(1, 7)]
    assert top == pytest.approx([5, 10, 20, 40, 60, 60], abs=1e-4)
    assert backoff_seconds(3, 0.5, initial=5, maximum=60) == 15.0


def test_no_retry_that_would_start_after_the_deadline() -> None:
    assert next_retry_seconds(1, 0.0, 10.0, initial=5, maximum=60) == 2.5
    assert next_retry_seconds(4, 0.0, 10.0, initial=5, maximum=60) is None
    assert next_retry_seconds(1, 0.0, 0.0, initial=5, maximum=60) is None


# --- credentials ----------------------------------------------------------------------------

CREDENTIALS = """\
# relay              user:password
mx1.isp.example      site:s3cret
[2001:db8::1]:587    six:pass:with:colons and space
*                    fallback:pw
"""


def test_credentials_by_host_port_host_then_star() -> None:
    table = parse_credentials(CREDENTIALS)
    assert credentials_for(Relay("mx1.isp.example", 587), table) == Credentials("site", "s3cret")
    six = credentials_for(Relay("2001:db8::1", 587), table)
    assert six == Credentials("six", "pass:with:colons and space")
    assert credentials_for(Relay("2001:db8::1", 25), table) == Credentials("fallback", "pw")
    assert credentials_for(Relay("mx1.isp.example"), {}) is None
    assert "s3cret" not in repr(table)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        pytest.param("mx.example user-without-password-secret\n", "2", "RELAY USER", id="no-colon"),
        pytest.param("mx.example site:pässwörd-secret\n", "2", "ASCII", id="not-ascii"),
        pytest.param("mx.example:99999 site:secret\n", "2", "mx.example:99999", id="bad-relay"),
    ],
)
def test_a_bad_credentials_line_is_named_without_its_secret(
    text: str, line: str, reason: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_credentials("# relays\n" + text)
    assert caught.value.value == line
    assert reason in caught.value.reason
    assert "secret" not in str(caught.value)


def test_admin_style_lines() -> None:
    flushed = TriggerOutcome(
        "site.example",
        "mx1.isp.example:25",
        Status.FLUSHED,
        "253 OK, 3 pending messages for node site.example started",
        0.0,
        address="2001:db8::1",
        code=253,
        pending_messages=3,
        attempts=2,
        encrypted=True,
    )
    assert outcome_line(flushed) == (
        "site.example: relay=mx1.isp.example[2001:db8::1]:25, tls=yes, pending=3, attempts=2, "
        "status=flushed (253 OK, 3 pending messages for node site.example started)"
    )
    none = TriggerOutcome("@x.example", "", Status.NO_RELAY, "x.example has no MX records", 0.0)
    assert outcome_line(none) == (
        "@x.example: relay=none, attempts=1, status=no-relay (x.example has no MX records)"
    )


@pytest.mark.parametrize(
    ("problem", "temporary", "mx_found", "relays", "expected"),
    [
        pytest.param("SERVFAIL", True, False, (), Status.UNREACHABLE, id="servfail-passes"),
        pytest.param("NXDOMAIN", False, False, (), Status.NO_RELAY, id="nxdomain-final"),
        pytest.param("", False, False, (), Status.NO_RELAY, id="no-mx"),
        pytest.param("", False, True, (), Status.NO_RELAY, id="only-this-host"),
        pytest.param("", False, True, ("mx1.isp.example",), None, id="relays"),
    ],
)
def test_why_discovery_found_nobody_to_ask(
    problem: str, temporary: bool, mx_found: bool, relays: tuple[str, ...], expected: Status | None
) -> None:
    choice = RelayChoice(relays, () if relays else ("gw.site.example",))
    reason = no_relay_reason("site.example", problem, temporary, mx_found, choice)
    assert (reason[0] if reason else None) is expected
