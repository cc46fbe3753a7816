"""A real private Sendmail relay with etrn-milter and etrn-socketmap: hold, tag, record, ETRN
exactly (Sendmail's own ETRN matches substrings), refuse, and fail open."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Callable
from pathlib import Path

from conftest import SendmailRelay, wait_for

from etrn_ext.testing.daemons import with_resolv_conf
from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.testing.site import FakeSite

# Held too, but not registered: Sendmail's substring ETRN for site.test would flush them.
LOOKALIKES = {"site.testing.org": "etrnhold:[{site}]", "notsite.test": "etrnhold:[{site}]"}


def etrn(setup: SendmailRelay, argument: str, source: str) -> tuple[int, str, float]:
    started = time.monotonic()
    with smtplib.SMTP(
        setup.relay.address, setup.relay.port, timeout=30, source_address=(source, 0)
    ) as client:
        client.ehlo("mx.site.test")
        code, reply = client.docmd("ETRN", argument)
    return code, reply.decode(), time.monotonic() - started


def relay_with_mail(
    make: Callable[..., SendmailRelay], site: FakeSite
) -> tuple[SendmailRelay, list[str]]:
    setup = make(
        {"site.test": ("--allow", f"{site.address}/32")},
        {name: route.format(site=site.address) for name, route in LOOKALIKES.items()},
    )
    ids = [
        setup.relay.send(["bob@site.test"]),
        setup.relay.send(["carol@site.test"]),
        setup.relay.send(["d@site.testing.org", "c@notsite.test"]),
    ]
    return setup, ids


def test_held_mail_is_tagged_and_recorded(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite
) -> None:
    setup, ids = relay_with_mail(make_sendmail_relay, fake_site)
    assert "stat=queued" in setup.relay.log.read_text(errors="replace")
    qf = next(setup.relay.queue_directory.rglob(f"qf{ids[0]}")).read_text(errors="replace")
    assert "X-ETRN-Held: site.test; relay=relay.test; queued=" in qf
    rows = wait_for(lambda: setup.etrnctl.json("list", "site.test"))
    assert [(r["queue_id"], r["recipient"]) for r in rows] == [  # type: ignore[attr-defined]
        (ids[0], "bob@site.test"),
        (ids[1], "carol@site.test"),
    ]
    synced = setup.etrnctl.json("sync")
    assert (synced["messages_scanned"], synced["added"]) == (3, 0)  # the queue files agree


def test_etrn_flushes_exactly_the_domain(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite
) -> None:
    setup, ids = relay_with_mail(make_sendmail_relay, fake_site)
    code, reply, _ = etrn(setup, "site.test", fake_site.address)
    assert (code, reply) == (250, "2.0.0 Queuing for node site.test started")
    assert sorted(fake_site.wait_for_recipients(2, timeout=20)) == [
        "bob@site.test",
        "carol@site.test",
    ]
    time.sleep(1)
    assert sorted(fake_site.recipients()) == [
        "bob@site.test",
        "carol@site.test",
    ]  # nothing else moved
    assert ids[2] in setup.relay.queued_files()
    audit = wait_for(lambda: setup.etrnctl.json("events", "--kind", "etrn"))
    assert [(e["outcome"], e["actor"], e["domain"]) for e in audit] == [  # type: ignore[attr-defined]
        ("allowed", fake_site.address, "site.test")
    ]


def test_an_etrn_too_soon_after_the_last_is_told_when_to_retry(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite
) -> None:
    setup, _ids = relay_with_mail(make_sendmail_relay, fake_site)
    assert etrn(setup, "site.test", fake_site.address)[0] == 250
    fake_site.wait_for_recipients(2, timeout=20)
    late = setup.relay.send(["late@site.test"])
    code, reply, _ = etrn(setup, "site.test", fake_site.address)  # within the 60 s interval
    assert code == 458
    assert reply.startswith("4.7.1 Unable to queue messages for node site.test for another ")
    assert reply.endswith(" seconds")
    assert late in setup.relay.queued_files()  # a 250 here would have been a promise broken


def test_refused_client_moves_nothing(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite
) -> None:
    setup, _ids = relay_with_mail(make_sendmail_relay, fake_site)
    stranger = free_loopback_address((2526,))
    code, reply, _ = etrn(setup, "site.test", stranger)
    assert code == 459
    assert "not allowed to flush site.test" in reply
    code, reply, _ = etrn(setup, "#etrn", fake_site.address)  # queue-group form: everybody's mail
    assert code == 459
    time.sleep(1)
    assert fake_site.recipients() == []
    audit = wait_for(lambda: setup.etrnctl.json("events", "--kind", "etrn"))
    assert [e["outcome"] for e in audit] == ["refused", "refused"]  # type: ignore[attr-defined]


def test_a_substring_of_a_domain_is_that_domains_etrn(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite
) -> None:
    # Left to Sendmail, each of these would run bob@site.test's mail (substring match).
    setup, ids = relay_with_mail(make_sendmail_relay, fake_site)
    stranger = free_loopback_address((2526,))
    for argument in ("site.tes", "SITE.TE", "@ite.test", "@bob", "@"):
        code, reply, _ = etrn(setup, argument, stranger)
        assert (code, reply) == (459, "4.7.1 not allowed to flush site.test"), argument
    time.sleep(1)
    assert fake_site.recipients() == []
    code, _reply, _ = etrn(setup, "site.tes", fake_site.address)  # the site may: exactly
    assert code == 250
    assert sorted(fake_site.wait_for_recipients(2, timeout=20)) == [
        "bob@site.test",
        "carol@site.test",
    ]
    time.sleep(1)
    assert ids[2] in setup.relay.queued_files()  # site.testing.org: not Sendmail's own run


def test_flush_wait_is_exact_too(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite
) -> None:
    setup, ids = relay_with_mail(make_sendmail_relay, fake_site)
    result = setup.etrnctl("flush", "site.test", "--wait", "20")
    assert result.exit_code == 0, result.output
    assert "2 delivered" in result.stdout
    assert sorted(fake_site.recipients()) == ["bob@site.test", "carol@site.test"]
    assert set(setup.relay.queued_files()) == {ids[2]}


def test_flush_notes_what_sendmail_runs_with_the_domain(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite
) -> None:
    setup = make_sendmail_relay({"site.test": (), "ship.test": ()}, {})
    mixed = setup.relay.send(["bob@site.test", "ann@ship.test"])  # one queue group: one file
    result = setup.etrnctl("flush", "site.test")
    assert result.exit_code == 0, result.output
    assert (
        f"note: {mixed} also goes to ann@ship.test: Sendmail's -qI runs every recipient of "
        "a queue file, so these recipients are delivered too"
    ) in result.stdout
    assert "Postfix" not in result.stdout


def test_dead_hooks_cost_neither_mail_nor_etrn(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite
) -> None:
    setup, _ids = relay_with_mail(make_sendmail_relay, fake_site)
    setup.milter.stop(kill=True)
    setup.socketmap.stop(kill=True)
    queue_id = setup.relay.send(["late@site.test"])  # accepted, untagged
    assert "X-ETRN-Held" not in next(setup.relay.queue_directory.rglob(f"qf{queue_id}")).read_text(
        errors="replace"
    )
    code, _reply, seconds = etrn(setup, "site.test", fake_site.address)
    assert code == 250  # check_etrn's TEMP branch: Sendmail's own ETRN
    assert seconds < 10
    assert "late@site.test" in fake_site.wait_for_recipients(5, timeout=20)  # substring run


def test_a_decision_waiting_for_dns_is_answered_before_sendmail_gives_up(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite, tmp_path: Path
) -> None:
    # A site's name server is often behind its own link: while the site is away, a
    # host-name or dns:mx rule waits for DNS that never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((free_loopback_address((53,)), 53))
        resolv_conf = tmp_path / "resolv.conf"
        resolv_conf.write_text(f"nameserver {silent.getsockname()[0]}\n")
        setup = make_sendmail_relay(
            {"site.test": ("--allow", "mx.site.test")},
            {},
            more_config="[etrn]\ndns_timeout_seconds = 30.0\n",
            socketmap_wrapper=with_resolv_conf(resolv_conf),
        )
        setup.relay.send(["bob@site.test"])
        code, reply, seconds = etrn(setup, "site.test", fake_site.address)
    assert seconds < 5  # sendmail.cf's K line: -d5, then "451 ... read timeout"
    assert (code, reply) == (459, "4.7.1 not allowed to flush site.test")  # DNS failed


def test_doctor_finds_the_shipped_setup_clean(
    make_sendmail_relay: Callable[..., SendmailRelay], fake_site: FakeSite
) -> None:
    setup, _ids = relay_with_mail(make_sendmail_relay, fake_site)
    result = setup.etrnctl("doctor")
    assert (result.exit_code, result.stdout) == (0, "doctor: no problems found\n")
    lines = setup.etrnctl("sendmail-config", "site.test").stdout
    assert f"QUEUE_GROUP(`etrn', `P={setup.relay.queue_directory}/etrn, I=99d')dnl" in lines
