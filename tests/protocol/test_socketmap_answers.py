"""What etrn-socketmap answers Sendmail's check_etrn for each kind of ETRN, in exact mode
(the hook flushes exact queue ids and Sendmail runs nothing of its own)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from etrn_ext.config import EtrnSettings
from etrn_ext.core.model import EventKind
from etrn_ext.core.registry import DomainChanges
from etrn_ext.service.etrn import EtrnHook
from etrn_ext.service.socketmap import answer_lookup
from etrn_ext.wire.socketmap import Lookup

SITE_CLIENT = "192.0.2.7"
STRANGER = "198.51.100.9"


def queue_message(queue: Path, queue_id: str, *recipients: str) -> None:
    """A qf file as Sendmail writes one (research notes, section 4.2)."""
    lines = ["V8", "T1795894704", "N0", "S<alice@example.org>"]
    lines += [f"RPFD:<{recipient}>" for recipient in recipients]
    lines += ["H??Subject: held", "."]
    (queue / f"qf{queue_id}").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site_hook(make_socketmap_hook: Callable[..., EtrnHook], tmp_path: Path) -> EtrnHook:
    """site.test (only SITE_CLIENT may flush it) has mail queued, as do lookalikes that
    are not registered and whose mail anybody may flush with Sendmail's own ETRN."""
    queue_message(tmp_path / "mqueue", "6ASJcOZb020866", "bob@site.test")
    queue_message(tmp_path / "mqueue", "6ASJcOZb020867", "d@site.testing.org", "c@notsite.test")
    return make_socketmap_hook({"site.test": DomainChanges(allow=(f"{SITE_CLIENT}/32",))})


@pytest.mark.parametrize(
    "argument",
    [
        pytest.param("site.test", id="the-domain"),
        pytest.param("site.tes", id="prefix"),
        pytest.param("SITE.TE", id="prefix-upper-case"),
        pytest.param("@ite.test", id="at-form-inside"),
        pytest.param("@bob", id="at-form-local-part"),
        pytest.param("@", id="at-form-everything"),
    ],
)
def test_an_argument_that_runs_a_registered_domains_mail_is_that_domains_etrn(
    site_hook: EtrnHook, argument: str
) -> None:
    # Left to Sendmail (PASS), these would run bob@site.test's mail by substring.
    assert ask(site_hook, STRANGER, argument) == "REFUSE 459 4.7.1 not allowed to flush site.test"
    assert ask(site_hook, SITE_CLIENT, argument) == "HOOK"  # flushes site.test exactly
    assert site_hook.writer.flush(timeout=5)
    audit = site_hook.ctx.store.events_for(kinds={EventKind.ETRN})
    assert [(e.actor, e.outcome, e.domain) for e in reversed(audit)] == [
        (STRANGER, "refused", "site.test"),
        (SITE_CLIENT, "allowed", "site.test"),
    ]


@pytest.mark.parametrize("argument", ["notsite.test", "site.testing.org", "@other", "x y"])
def test_an_argument_that_runs_no_registered_mail_is_left_to_sendmail(
    site_hook: EtrnHook, argument: str
) -> None:
    assert ask(site_hook, STRANGER, argument) == "PASS"


def ask(hook: EtrnHook, client: str, argument: str) -> str | None:
    return answer_lookup(hook, Lookup("etrnpolicy", f"{client} {argument}"), "etrnpolicy")


def test_a_throttled_etrn_tells_the_client_when_to_come_back(
    make_socketmap_hook: Callable[..., EtrnHook],
) -> None:
    # Sendmail runs nothing after HOOK: a throttled ETRN answered 250 would move nothing.
    hook = make_socketmap_hook(
        {"site.test": DomainChanges(allow=(f"{SITE_CLIENT}/32",))},
        etrn=EtrnSettings(domain_flush_interval_seconds=60),
    )
    now = [1000.0]
    hook.clock = lambda: now[0]
    assert ask(hook, SITE_CLIENT, "site.test") == "HOOK"
    now[0] += 10
    assert ask(hook, SITE_CLIENT, "site.test") == (
        "REFUSE 458 4.7.1 Unable to queue messages for node site.test for another 50 seconds"
    )


def test_in_substring_mode_an_etrn_is_for_every_domain_sendmail_runs(
    make_socketmap_hook: Callable[..., EtrnHook], tmp_path: Path
) -> None:
    # PASS lets Sendmail run -qR@site.test, which runs site.testing.org's mail too.
    queue_message(tmp_path / "mqueue", "6ASJcOZb020866", "bob@site.test")
    queue_message(tmp_path / "mqueue", "6ASJcOZb020867", "d@site.testing.org")
    hook = make_socketmap_hook(
        {
            "site.test": DomainChanges(allow=(f"{SITE_CLIENT}/32",)),
            "site.testing.org": DomainChanges(allow=("203.0.113.0/24",)),
        },
        mta={"sendmail_flush": "substring"},
    )
    assert ask(hook, SITE_CLIENT, "site.test") == (
        "REFUSE 459 4.7.1 not allowed to flush site.testing.org"
    )
    assert ask(hook, SITE_CLIENT, "@bob") == "PASS"  # runs site.test's mail only
