"""etrnctl trigger through click's CliRunner, against fake relays on loopback: output and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from etrn_ext.cli.main import (
    EX_CONFIG,
    EX_DATAERR,
    EX_NOHOST,
    EX_NOPERM,
    EX_TEMPFAIL,
    TRIGGER_EXIT_CODES,
    cli,
)
from etrn_ext.core.trigger import Summary
from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.testing.relay import EtrnRelay

MakeRelay = Callable[..., EtrnRelay]
Etrnctl = Callable[..., Result]

SITE_CONFIG = """\
[index]
url = "sqlite:///{tmp}/site.sqlite"
[mta]
node_name = "mx.site.test"
[site]
helo_name = "mx.site.test"
timeout_seconds = 2
deadline_seconds = 0.5
retry_initial_seconds = 0.05
retry_max_seconds = 0.2
"""


@pytest.fixture
def site_config(tmp_path: Path) -> Path:
    path = tmp_path / "etrn-ext.toml"
    path.write_text(SITE_CONFIG.format(tmp=tmp_path))
    return path


@pytest.fixture
def etrnctl(site_config: Path) -> Etrnctl:
    def run(*args: str, extra: str = "") -> Result:
        if extra:
            site_config.write_text(site_config.read_text() + extra)
        return CliRunner().invoke(
            cli, ["--config", str(site_config), *args], catch_exceptions=False
        )

    return run


def at(relay: EtrnRelay) -> str:
    return f"{relay.address}:{relay.port}"


def test_every_summary_has_an_exit_status() -> None:
    assert set(TRIGGER_EXIT_CODES) == {summary.value for summary in Summary}


def test_one_line_per_relay_and_domain(make_etrn_relay: MakeRelay, etrnctl: Etrnctl) -> None:
    relay = make_etrn_relay(replies={"@site.example": ["253 OK, 2 pending messages started"]})
    result = etrnctl("trigger", "site.example", "@site.example", "--relay", at(relay))
    assert result.exit_code == 0, result.output
    host = relay.address
    assert result.stdout.splitlines() == [
        f"site.example: relay={host}[{host}]:{relay.port}, tls=no, attempts=1, "
        "status=flushed (250 2.0.0 Queuing started)",
        f"@site.example: relay={host}[{host}]:{relay.port}, tls=no, pending=2, attempts=1, "
        "status=flushed (253 OK, 2 pending messages started)",
    ]


def test_json_for_scripts(make_etrn_relay: MakeRelay, etrnctl: Etrnctl) -> None:
    relay = make_etrn_relay(replies={"*": ["251 OK, no messages waiting for node site.example"]})
    result = etrnctl("trigger", "site.example", "--relay", at(relay), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["summary"] == "flushed"
    [outcome] = data["outcomes"]
    assert {k: v for k, v in outcome.items() if k != "at"} == {
        "target": "site.example",
        "relay": at(relay),
        "address": relay.address,
        "tls": False,
        "status": "nothing-waiting",
        "code": 251,
        "reply": "251 OK, no messages waiting for node site.example",
        "pending_messages": None,
        "attempts": 1,
    }
    assert outcome["at"].endswith("Z")


def test_a_refusal_exits_77_with_the_relays_words(
    make_etrn_relay: MakeRelay, etrnctl: Etrnctl
) -> None:
    good = make_etrn_relay()
    refusing = make_etrn_relay(replies={"*": ["459 4.7.1 Node site.example not allowed: ask us"]})
    result = etrnctl("trigger", "site.example", "--relay", at(good), "--relay", at(refusing))
    assert result.exit_code == EX_NOPERM == 77
    assert "status=refused (459 4.7.1 Node site.example not allowed: ask us)" in result.stdout


def test_some_temporary_failures_exit_75(make_etrn_relay: MakeRelay, etrnctl: Etrnctl) -> None:
    good = make_etrn_relay()
    busy = make_etrn_relay(replies={"*": ["458 Unable to queue messages for node site.example"]})
    result = etrnctl("trigger", "site.example", "--relay", at(good), "--relay", at(busy))
    assert result.exit_code == EX_TEMPFAIL == 75
    assert "status=temporary (458 Unable to queue messages for node site.example)" in result.stdout


def test_no_relay_reachable_exits_68(etrnctl: Etrnctl) -> None:
    nobody = free_loopback_address((2525,))
    result = etrnctl("trigger", "site.example", "--relay", f"{nobody}:2525", "--deadline", "0.2")
    assert result.exit_code == EX_NOHOST == 68
    assert "status=unreachable" in result.stdout
    assert "Connection refused" in result.stdout


def test_all_takes_the_pairs_from_the_site_section(
    make_etrn_relay: MakeRelay, etrnctl: Etrnctl
) -> None:
    first, second = make_etrn_relay(), make_etrn_relay()
    extra = f'domains = "site.example, @sub.example"\nrelays = "{at(first)}, {at(second)}"\n'
    result = etrnctl("trigger", "--all", "--json", extra=extra)
    assert result.exit_code == 0, result.output
    pairs = [(o["target"], o["relay"]) for o in json.loads(result.stdout)["outcomes"]]
    assert pairs == [
        ("site.example", at(first)),
        ("site.example", at(second)),
        ("@sub.example", at(first)),
        ("@sub.example", at(second)),
    ]
    assert [s.argument for s in first.seen] == ["site.example", "@sub.example"]


def test_all_without_configured_domains_is_a_config_error(etrnctl: Etrnctl) -> None:
    result = etrnctl("trigger", "--all")
    assert result.exit_code == EX_CONFIG
    assert "site.domains: is empty" in result.stderr


def test_history_says_when_each_relay_was_last_reached_and_what_it_said(
    make_etrn_relay: MakeRelay, etrnctl: Etrnctl
) -> None:
    relay = make_etrn_relay(replies={"*": ["250 OK", "458 Unable to queue messages"]})
    nobody = f"{free_loopback_address((2525,))}:2525"
    etrnctl("trigger", "site.example", "--relay", at(relay), "--relay", nobody)
    etrnctl("trigger", "site.example", "--relay", at(relay), "--deadline", "0.01")
    entries = json.loads(etrnctl("trigger", "--history", "--json").stdout)
    by_relay = {entry["relay"]: entry for entry in entries}
    assert set(by_relay) == {at(relay), nobody}
    latest = by_relay[at(relay)]
    assert (latest["status"], latest["reply"]) == ("temporary", "458 Unable to queue messages")
    assert latest["last_reached"] == latest["at"]
    assert latest["last_flushed"] is not None
    assert by_relay[nobody]["status"] == "unreachable"
    assert by_relay[nobody]["last_reached"] is None
    table = etrnctl("trigger", "--history", "site.example").stdout.splitlines()
    assert table[0].split() == [
        "TARGET",
        "RELAY",
        "LAST",
        "TRY",
        "STATUS",
        "LAST",
        "REACHED",
        "REPLY",
    ]
    assert len(table) == 3
    assert etrnctl("trigger", "--history", "other.example").stdout.splitlines()[1:] == []


@pytest.mark.expect_log("WARNING", "trigger outcomes not kept in the history")
def test_a_broken_history_does_not_stop_the_trigger(
    make_etrn_relay: MakeRelay, etrnctl: Etrnctl, site_config: Path
) -> None:
    relay = make_etrn_relay()
    site_config.write_text(
        site_config.read_text().replace("sqlite:///", "sqlite:////proc/no-such-dir")
    )
    result = etrnctl("trigger", "site.example", "--relay", at(relay))
    assert result.exit_code == 0
    assert "status=flushed" in result.stdout


def test_a_credentials_file_others_can_read_is_refused(
    make_etrn_relay: MakeRelay, etrnctl: Etrnctl, tmp_path: Path
) -> None:
    relay = make_etrn_relay()
    secrets = tmp_path / "credentials"
    secrets.write_text("* site:s3cret\n")
    secrets.chmod(0o644)
    result = etrnctl(
        "trigger", "site.example", "--relay", at(relay), extra=f'auth_file = "{secrets}"\n'
    )
    assert result.exit_code == EX_CONFIG
    assert "chmod 600" in result.stderr
    assert "s3cret" not in result.output
    assert relay.seen == []


def test_a_missing_ca_file_is_a_config_error(
    make_etrn_relay: MakeRelay, etrnctl: Etrnctl, tmp_path: Path
) -> None:
    relay = make_etrn_relay()
    missing = tmp_path / "no-ca.pem"
    result = etrnctl("trigger", "site.example", "--relay", at(relay), "--ca-file", str(missing))
    assert result.exit_code == EX_CONFIG
    assert f"site.tls_ca_file: cannot load {missing}" in result.stderr
    assert relay.seen == []


def test_a_queue_needs_a_named_relay(etrnctl: Etrnctl) -> None:
    result = etrnctl("trigger", "#site")
    assert result.exit_code == EX_DATAERR
    assert "name its relay with --relay" in result.stderr


def test_bad_targets_and_relays_are_refused_before_any_connection(etrnctl: Etrnctl) -> None:
    assert etrnctl("trigger", "--", "-x").exit_code == EX_DATAERR
    assert etrnctl("trigger", "site.example", "--relay", "mx:99999").exit_code == EX_DATAERR


def test_usage(etrnctl: Etrnctl) -> None:
    assert etrnctl("trigger").exit_code == 2
    assert etrnctl("trigger", "--history", "--relay", "mx.example").exit_code == 2


def test_wait_local_gives_up_when_the_local_mta_never_greets(etrnctl: Etrnctl) -> None:
    nobody = free_loopback_address((2525,))
    extra = f'local_smtp = "{nobody}:2525"\nlocal_wait_seconds = 0.6\n'
    never_asked = f"{free_loopback_address((2525,))}:2525"
    result = etrnctl("trigger", "site.example", "--relay", never_asked, "--wait-local", extra=extra)
    assert result.exit_code == EX_TEMPFAIL
    assert f"the local MTA at {nobody}:2525 did not greet within 0.6s" in result.stderr


def test_wait_local_goes_on_once_the_local_mta_greets(
    make_etrn_relay: MakeRelay, etrnctl: Etrnctl
) -> None:
    local, relay = make_etrn_relay(), make_etrn_relay()
    extra = f'local_smtp = "{at(local)}"\n'
    result = etrnctl("trigger", "site.example", "--relay", at(relay), "--wait-local", extra=extra)
    assert result.exit_code == 0
    assert [s.argument for s in relay.seen] == ["site.example"]
    assert local.seen == []
