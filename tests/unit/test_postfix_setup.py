"""The pure Postfix knowledge: config lines and the doctor's rules."""

from __future__ import annotations

import pytest

from etrn_ext.core.model import IntermittentDomain
from etrn_ext.core.names import parse_domain
from etrn_ext.core.postfix_setup import (
    PostfixFacts,
    check_postfix,
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
