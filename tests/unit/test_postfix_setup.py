"""The pure Postfix knowledge: config lines and the doctor's rules."""

from __future__ import annotations

import pytest

from etrn_ext.core.model import IntermittentDomain
from etrn_ext.core.names import parse_domain
from etrn_ext.core.postfix_setup import (
    PostfixFacts,
    check_postfix,
    milter_main_cf,
    policyd_main_cf,
    recommended_lifetime,
    render_postfix_config,
)

GOOD = {
    "relay_domains": "site.example",
    "fast_flush_domains": "site.example",
    "parent_domain_matches_subdomains": "fast_flush_domains,relay_domains",
    "transport_maps": "hash:/etc/postfix/transport",
    "defer_transports": "etrn-only",
    "maximal_queue_lifetime": "5d",
    "authorized_flush_users": "static:anyone",
    "mail_owner": "postfix",
    "smtpd_etrn_restrictions": "permit_mynetworks, reject",
}
SITE = IntermittentDomain(parse_domain("site.example"))


def facts(user: str = "root", **changes: str) -> PostfixFacts:
    return PostfixFacts(
        {**GOOD, **changes}, [("flush", "unix")], {"site.example": "etrn-only:"}, user
    )


def test_good_configuration_has_no_findings() -> None:
    assert check_postfix(facts(), [SITE]) == []


@pytest.mark.parametrize(
    ("user", "allowed", "finding"),
    [
        pytest.param("alice", "static:anyone", False, id="anyone"),
        pytest.param("alice", "root, alice", False, id="listed"),
        pytest.param("alice", "root", True, id="not-listed"),
        pytest.param("postfix", "root", False, id="mail-owner"),
        pytest.param("alice", "hash:/etc/postfix/flushers", False, id="table-cannot-tell"),
    ],
)
def test_authorized_flush_users(user: str, allowed: str, finding: bool) -> None:
    problems = [
        f.problem for f in check_postfix(facts(user, authorized_flush_users=allowed), [SITE])
    ]
    assert any("authorized_flush_users" in p for p in problems) is finding


def test_tables_in_relay_domains_are_not_called_wrong() -> None:
    assert check_postfix(facts(relay_domains="hash:/etc/postfix/relay"), [SITE]) == []


def test_lifetime_recommendation() -> None:
    long_outage = IntermittentDomain(
        parse_domain("ship.example"), expected_outage_seconds=20 * 86400
    )
    assert recommended_lifetime([SITE], None) == "5d"
    assert recommended_lifetime([SITE, long_outage], "5d") == "3w1d"
    assert recommended_lifetime([long_outage], "60d") == "60d"


def test_render_generic_lines() -> None:
    wide = IntermittentDomain(parse_domain("wide.example"), include_subdomains=True)
    lines = render_postfix_config([SITE, wide]).splitlines()
    assert "relay_domains = site.example, wide.example" in lines
    assert "fast_flush_domains = $relay_domains" in lines
    assert "defer_transports = etrn-only" in lines
    assert [line for line in lines if "\tetrn-only:" in line] == [
        "site.example\tetrn-only:",
        "wide.example\tetrn-only:",
        ".wide.example\tetrn-only:",
    ]


def test_render_merges_with_live_values() -> None:
    lines = render_postfix_config(
        [SITE], {"relay_domains": "a.example, SITE.example", "defer_transports": "slow"}
    )
    assert "relay_domains = a.example, SITE.example" in lines.splitlines()
    assert "defer_transports = slow, etrn-only" in lines.splitlines()


def test_policyd_lines_keep_the_admins_restrictions() -> None:
    current = {
        "smtpd_recipient_restrictions": (
            "check_recipient_access hash:/etc/postfix/blocklist, "
            "check_recipient_access hash:/etc/postfix/etrn-recipients, "
            "permit_mynetworks, reject_unauth_destination, "
            "check_policy_service { inet:127.0.0.1:10023, default_action=DUNNO }"
        ),
        "smtpd_end_of_data_restrictions": "check_policy_service unix:private/ratelimit",
        "smtpd_etrn_restrictions": "check_policy_service unix:private/etrn-policy, reject",
    }
    lines = policyd_main_cf(current, "/etc/postfix", "unix:private/etrn-policy")
    service = "check_policy_service { unix:private/etrn-policy, default_action=DUNNO }"
    assert lines["smtpd_recipient_restrictions"] == (
        "check_recipient_access hash:/etc/postfix/blocklist, "
        "check_recipient_access hash:/etc/postfix/etrn-recipients, "
        "permit_mynetworks, reject_unauth_destination, "
        "check_policy_service { inet:127.0.0.1:10023, default_action=DUNNO }"
    )
    assert lines["smtpd_end_of_data_restrictions"] == (
        f"check_policy_service unix:private/ratelimit, {service}"
    )
    assert lines["smtpd_etrn_restrictions"] == f"{service}, reject"


def test_the_recipient_check_goes_before_the_first_permit() -> None:
    lines = policyd_main_cf(
        {"smtpd_recipient_restrictions": "permit_sasl_authenticated, reject_unauth_destination"},
        "/etc/postfix",
        "unix:private/etrn-policy",
    )
    assert lines["smtpd_recipient_restrictions"] == (
        "check_recipient_access hash:/etc/postfix/etrn-recipients, "
        "permit_sasl_authenticated, reject_unauth_destination"
    )


def test_doctor_sees_a_permit_before_our_check_and_a_global_default_action() -> None:
    late = "permit_mynetworks, check_recipient_access hash:/etc/postfix/etrn-recipients"
    problems = [f.problem for f in check_postfix(facts(smtpd_recipient_restrictions=late), [SITE])]
    assert any("neither quota-checked nor recorded" in p for p in problems)
    bare = "check_policy_service unix:private/etrn-policy, reject"
    assert check_postfix(facts(smtpd_etrn_restrictions=bare), [SITE])
    assert not check_postfix(
        facts(smtpd_etrn_restrictions=bare, smtpd_policy_service_default_action="DUNNO"), [SITE]
    )


def test_milter_lines_leave_other_milters_failure_policy_alone() -> None:
    alone = milter_main_cf({}, "unix:private/etrn-milter")
    assert alone["milter_default_action"] == "accept"
    shared = milter_main_cf({"smtpd_milters": "inet:127.0.0.1:3310"}, "unix:private/etrn-milter")
    assert shared == {
        "smtpd_milters": (
            "inet:127.0.0.1:3310, { unix:private/etrn-milter, default_action=accept }"
        )
    }
