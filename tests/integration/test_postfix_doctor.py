"""etrnctl doctor on deliberately broken private Postfix relays: one test per trap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Etrnctl, relay_config

from etrn_ext.config import load_settings
from etrn_ext.service.context import Context
from etrn_ext.service.postfix import doctor
from etrn_ext.testing.postfix import PrivatePostfix

Relay = Callable[..., PrivatePostfix]


def _problems(etrnctl: Etrnctl) -> list[str]:
    return [finding["problem"] for finding in etrnctl.json("doctor")]


def test_recommended_setup_is_clean(
    make_relay: Relay, etrnctl_for: Callable[[PrivatePostfix], Etrnctl]
) -> None:
    relay = make_relay(start=False)
    etrnctl = etrnctl_for(relay)
    etrnctl("domain", "add", "site.example", "--subdomains", "--outage", "3d")
    result = etrnctl("doctor")
    assert result.exit_code == 0, result.output
    assert result.stdout == "doctor: no problems found\n"


@pytest.mark.parametrize(
    ("relay_options", "domain_options", "expected"),
    [
        pytest.param(
            {"main_cf": {"relay_domains": ""}},
            (),
            "relay_domains is empty",
            id="relay-domains-empty",
        ),
        pytest.param(
            {"main_cf": {"fast_flush_domains": "other.example"}},
            (),
            "site.example is not in fast_flush_domains",
            id="not-fast-flush",
        ),
        pytest.param(
            {"transport": ["other.example {nexthop}"]},
            (),
            "site.example has no transport_maps entry",
            id="no-transport",
        ),
        pytest.param(
            {"transport": ["site.example {nexthop}"]},
            ("--subdomains",),
            "subdomains of site.example has no transport_maps entry (.site.example)",
            id="subdomains-not-covered",
        ),
        pytest.param(
            {"omit_services": ["flush"]},
            (),
            "master.cf has no flush service",
            id="no-flush-service",
        ),
        pytest.param(
            {"main_cf": {"defer_transports": ""}},
            (),
            "which is not in defer_transports",
            id="transport-not-deferred",
        ),
        pytest.param(
            {},
            ("--outage", "14d"),
            "maximal_queue_lifetime (5d) is shorter than",
            id="lifetime-short",
        ),
        pytest.param(
            {"main_cf": {"smtpd_etrn_restrictions": ""}},
            (),
            "smtpd_etrn_restrictions is empty",
            id="anyone-may-etrn",
        ),
        pytest.param(
            {
                "main_cf": {
                    "smtpd_etrn_restrictions": "check_policy_service unix:private/etrn-policy, reject"
                }
            },
            (),
            "smtpd_etrn_restrictions uses check_policy_service without default_action",
            id="policy-without-default-action",
        ),
        pytest.param(
            {
                "main_cf": {
                    "smtpd_restriction_classes": "etrn_policy",
                    "etrn_policy": "check_policy_service inet:127.0.0.1:10040",
                }
            },
            (),
            "etrn_policy uses check_policy_service without default_action",
            id="policy-class-without-default-action",
        ),
    ],
)
def test_each_trap_is_reported(
    make_relay: Relay,
    etrnctl_for: Callable[[PrivatePostfix], Etrnctl],
    relay_options: dict,  # type: ignore[type-arg]
    domain_options: tuple[str, ...],
    expected: str,
) -> None:
    relay = make_relay(start=False, **relay_options)
    etrnctl = etrnctl_for(relay)
    etrnctl("domain", "add", "site.example", *domain_options)
    problems = _problems(etrnctl)
    assert any(expected in problem for problem in problems), problems
    result = etrnctl("doctor")
    warning_only = expected == "smtpd_etrn_restrictions is empty"
    assert result.exit_code == (0 if warning_only else 1)
    assert "fix:" in result.stdout


def test_authorized_flush_users_locking_out_the_cli_user(make_relay: Relay, tmp_path: Path) -> None:
    relay = make_relay(start=False, main_cf={"authorized_flush_users": "root, ops"})
    context = Context(load_settings(str(relay_config(relay, tmp_path))), actor="test")
    context_domain = Etrnctl(relay_config(relay, tmp_path))
    context_domain("domain", "add", "site.example")
    locked_out = [f.problem for f in doctor(context, user="alice")]
    assert any("authorized_flush_users does not include alice" in p for p in locked_out)
    assert not any("authorized_flush_users" in f.problem for f in doctor(context, user="ops"))
    assert not any("authorized_flush_users" in f.problem for f in doctor(context, user="root"))
    context.close()


def test_postfix_config_lines_fix_a_bare_relay(
    make_relay: Relay, etrnctl_for: Callable[[PrivatePostfix], Etrnctl]
) -> None:
    relay = make_relay(
        start=False, main_cf={"defer_transports": "", "relay_domains": "other.example"}
    )
    etrnctl = etrnctl_for(relay)
    etrnctl("domain", "add", "site.example")
    lines = etrnctl("postfix-config", "site.example").stdout.splitlines()
    assert "relay_domains = other.example, site.example" in lines
    assert "defer_transports = etrn-only" in lines
    assert "site.example\tetrn-only:" in lines
    relay.extra_main_cf.update(
        {"defer_transports": "etrn-only", "relay_domains": "other.example, site.example"}
    )
    relay.write_config()
    assert _problems(etrnctl) == []
