"""etrn-policyd in front of a real private Postfix: recording, quota, the ETRN hook, fail-open."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable

import pytest
from conftest import PolicyRelay, wait_for

from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.testing.postfix import PrivatePostfix
from etrn_ext.testing.site import FakeSite

MakePolicyRelay = Callable[..., PolicyRelay]


def etrn(relay: PrivatePostfix, domain: str, source: str) -> tuple[int, str]:
    with smtplib.SMTP(relay.address, relay.port, timeout=30, source_address=(source, 0)) as client:
        client.ehlo("mx.site.example")
        code, reply = client.docmd("ETRN", domain)
    return code, reply.decode()


def test_held_mail_is_recorded_at_end_of_message(make_policy_relay: MakePolicyRelay) -> None:
    setup = make_policy_relay({"site.example": ("--subdomains",), "ship.example": ()})
    relay, etrnctl = setup.relay, setup.etrnctl
    first = relay.send(
        ["a@site.example", "b@mx.site.example", "c@ship.example", "d@other.example"],
        sender="alice@example.org",
    )
    second = relay.send(["e@site.example"], sender="", body="x" * 3000)
    relay.send(["f@other.example"])
    rows = wait_for(
        lambda: (
            [r for r in etrnctl.json("list") if r["queue_id"] in (first, second)]
            if len(etrnctl.json("list")) == 4
            else None
        )
    )
    assert rows, setup.daemon.log_text()
    queue = {e["queue_id"]: e for e in relay.queue()}
    recorded = {
        (r["queue_id"], r["recipient"]): (r["domain"], r["sender"]) for r in etrnctl.json("list")
    }
    assert recorded == {
        (first, "a@site.example"): ("site.example", "alice@example.org"),
        (first, "b@mx.site.example"): ("site.example", "alice@example.org"),
        (first, "c@ship.example"): ("ship.example", "alice@example.org"),
        (second, "e@site.example"): ("site.example", ""),
    }
    # END-OF-MESSAGE reports the bytes received; the queue file adds Postfix's own headers.
    sizes = {r["queue_id"]: r["size"] for r in etrnctl.json("list")}
    assert 0 < sizes[first] < queue[first]["message_size"]
    assert sizes[second] > 3000
    etrnctl("sync")
    assert {r["queue_id"]: r["size"] for r in etrnctl.json("list")} == {
        first: queue[first]["message_size"],
        second: queue[second]["message_size"],
    }


def test_quota_refusal_reaches_the_client(make_policy_relay: MakePolicyRelay) -> None:
    setup = make_policy_relay({"site.example": ("--quota-messages", "2"), "ship.example": ()})
    relay, etrnctl = setup.relay, setup.etrnctl
    relay.send(["one@site.example"])
    relay.send(["two@site.example"])
    wait_for(lambda: len(etrnctl.json("list")) == 2)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        relay.send(["three@site.example"])
    [(code, reply)] = refused.value.recipients.values()
    assert code == 452
    assert b"4.2.2" in reply
    assert b"held-mail quota for site.example exceeded" in reply
    relay.send(["fine@ship.example", "other@other.example"])  # other domains are unaffected
    quota_events = wait_for(lambda: etrnctl.json("events", "site.example", "--kind", "quota"))
    assert [e["outcome"] for e in quota_events] == ["refused"]  # type: ignore[attr-defined]


def test_etrn_is_authorised_audited_and_flushes(
    make_policy_relay: MakePolicyRelay, fake_site: FakeSite
) -> None:
    setup = make_policy_relay({"site.example": ("--allow", f"{fake_site.address}/32")})
    relay, etrnctl = setup.relay, setup.etrnctl
    relay.send(["held1@site.example"])
    relay.send(["held2@site.example"])
    relay.wait_for_queue(lambda q: len(q) == 2 and all(e["queue_name"] == "deferred" for e in q))
    stranger = free_loopback_address((2526,))

    code, reply = etrn(relay, "site.example", stranger)
    assert (code, reply) == (
        459,
        "4.7.1 <site.example>: Etrn command rejected: not allowed to flush site.example",
    )
    time.sleep(1)
    assert fake_site.recipients() == []

    code, reply = etrn(relay, "site.example", fake_site.address)
    assert code == 250
    assert sorted(fake_site.wait_for_recipients(2, timeout=20)) == [
        "held1@site.example",
        "held2@site.example",
    ]
    audit = wait_for(
        lambda: (
            etrnctl.json("events", "site.example", "--kind", "etrn")
            if len(etrnctl.json("events", "site.example", "--kind", "etrn")) == 2
            else None
        )
    )
    assert [(e["outcome"], e["actor"]) for e in audit] == [
        ("allowed", fake_site.address),
        ("refused", stranger),
    ]
    assert audit[0]["detail"]["reason"] == f"address in {fake_site.address}/32"


def test_dead_daemon_fails_open_and_sync_fills_the_gap(
    make_policy_relay: MakePolicyRelay, fake_site: FakeSite
) -> None:
    setup = make_policy_relay({"site.example": ("--allow", f"{fake_site.address}/32")})
    relay, etrnctl = setup.relay, setup.etrnctl
    setup.daemon.stop(kill=True)
    queue_id = relay.send(["while-down@site.example"])  # accepted although the daemon is dead
    relay.wait_for_queue(lambda q: len(q) == 1 and q[0]["queue_name"] == "deferred")
    assert etrnctl.json("list") == []
    assert etrnctl.json("sync")["added"] == 1
    assert [r["queue_id"] for r in etrnctl.json("list")] == [queue_id]
    code, _reply = etrn(
        relay, "site.example", fake_site.address
    )  # default_action=DUNNO, then mynetworks
    assert code == 250
    assert fake_site.wait_for_recipients(1, timeout=20) == ["while-down@site.example"]
    setup.daemon.start()
    relay.send(["after-restart@site.example"])
    assert wait_for(
        lambda: any(r["recipient"] == "after-restart@site.example" for r in etrnctl.json("list"))
    )


def test_sigterm_commits_pending_writes(make_policy_relay: MakePolicyRelay) -> None:
    # The writer waits 2 s to group commits: the row is still pending at SIGTERM.
    setup = make_policy_relay({"site.example": ()}, index_lines="batch_max_delay_seconds = 2\n")
    relay, etrnctl = setup.relay, setup.etrnctl
    relay.send(["last@site.example"])
    assert etrnctl.json("list") == []
    started = time.monotonic()
    assert setup.daemon.stop() == 0
    # smtpd keeps its policy connection open; stopping waits for the writer, not for it.
    assert time.monotonic() - started < 4.0
    assert [r["recipient"] for r in etrnctl.json("list")] == ["last@site.example"]
    log = setup.daemon.log_text()
    assert "stopped; index writer" in log
    assert "CancelledError" not in log


def test_etrn_flushes_mail_no_flush_log_covers(
    make_policy_relay: MakePolicyRelay, fake_site: FakeSite
) -> None:
    """Mail released from the hold queue is in no flush log: Postfix's ETRN misses it, the hook not."""
    setup = make_policy_relay(
        {"site.example": ("--allow", f"{fake_site.address}/32")},
        maps={"sender-hold": ["holdme@example.org HOLD"]},
        main_cf={"smtpd_sender_restrictions": "check_sender_access hash:{config}/sender-hold"},
    )
    relay, etrnctl = setup.relay, setup.etrnctl
    released = relay.send(["released@site.example"], sender="holdme@example.org")
    relay.send(["ordinary@site.example"])
    relay.wait_for_queue(lambda q: {e["queue_name"] for e in q} == {"hold", "deferred"})
    relay.command("postsuper", "-H", released)  # to deferred/, but never deferred by an agent
    code, _reply = etrn(relay, "site.example", fake_site.address)
    assert code == 250
    assert sorted(fake_site.wait_for_recipients(2, timeout=20)) == [
        "ordinary@site.example",
        "released@site.example",
    ]
    flushes = wait_for(lambda: etrnctl.json("events", "site.example", "--kind", "flush"))
    assert [e["detail"]["queue_ids"] for e in flushes] == [[released]]  # type: ignore[index]


def test_sighup_reloads_settings_for_new_requests(make_policy_relay: MakePolicyRelay) -> None:
    setup = make_policy_relay({"site.example": ()})
    relay, daemon = setup.relay, setup.daemon
    stranger = free_loopback_address((2526,))
    assert etrn(relay, "site.example", stranger)[1].endswith("not allowed to flush site.example")
    config = daemon.argv[daemon.argv.index("--config") + 1]
    with open(config, "a") as handle:
        handle.write('[etrn]\nrefuse_action = "459 4.7.1 ask the ISP for {domain}"\n')
    daemon.reload()
    assert wait_for(lambda: "configuration reloaded" in daemon.log_text())
    assert etrn(relay, "site.example", stranger)[1].endswith("ask the ISP for site.example")


def test_repeated_etrn_starts_no_new_flush_work(
    make_policy_relay: MakePolicyRelay, fake_site: FakeSite
) -> None:
    setup = make_policy_relay({"site.example": ("--allow", f"{fake_site.address}/32")})
    for _ in range(3):
        assert etrn(setup.relay, "site.example", fake_site.address)[0] == 250
    audit = wait_for(
        lambda: (
            [e for e in setup.etrnctl.json("events", "--kind", "etrn") if e["detail"]["throttled"]]
            if len(setup.etrnctl.json("events", "--kind", "etrn")) == 3
            else None
        )
    )
    assert [e["detail"]["throttled"].startswith("site.example was flushed") for e in audit] == [
        True,
        True,
    ]  # type: ignore[union-attr]
