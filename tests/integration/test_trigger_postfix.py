"""etrnctl trigger, run as the site would, against a real private Postfix relay."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result
from conftest import PolicyRelay

from etrn_ext.cli.main import EX_NOPERM, cli
from etrn_ext.testing.postfix import PrivatePostfix
from etrn_ext.testing.site import FakeSite


def site_etrnctl(tmp_path: Path) -> Callable[..., Result]:
    """etrnctl with the site's own configuration (its own index, quick retries)."""
    config = tmp_path / "site.toml"
    config.write_text(
        f'[index]\nurl = "sqlite:///{tmp_path}/site.sqlite"\n'
        '[site]\nhelo_name = "mx.site.example"\ndeadline_seconds = 5\n'
        "retry_initial_seconds = 0.2\n"
    )

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    return run


def test_trigger_flushes_the_held_mail_to_the_site(
    make_relay: Callable[..., PrivatePostfix], fake_site: FakeSite, tmp_path: Path
) -> None:
    relay = make_relay(domains=["site.example"])
    relay.send(["bob@site.example", "carol@site.example"])
    relay.wait_for_queue(lambda q: q and q[0]["queue_name"] == "deferred")
    assert fake_site.recipients() == []
    etrnctl = site_etrnctl(tmp_path)

    result = etrnctl("trigger", "site.example", "--relay", relay.address)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"site.example: relay={relay.address}[{relay.address}]:25, tls=no, attempts=1, "
        "status=flushed (250 Queuing started)\n"
    )
    assert sorted(fake_site.wait_for_recipients(2, timeout=20)) == [
        "bob@site.example",
        "carol@site.example",
    ]
    assert relay.wait_for_queue(lambda q: not q) == []
    [entry] = json.loads(etrnctl("trigger", "--history", "--json").stdout)
    assert (entry["relay"], entry["status"]) == (f"{relay.address}:25", "flushed")


def test_a_relay_that_refuses_the_client_exits_with_its_reply(
    make_policy_relay: Callable[..., PolicyRelay], fake_site: FakeSite, tmp_path: Path
) -> None:
    setup = make_policy_relay({"site.example": ("--allow", "192.0.2.0/24")})
    relay = setup.relay
    relay.send(["bob@site.example"])
    relay.wait_for_queue(lambda q: q and q[0]["queue_name"] == "deferred")

    result = site_etrnctl(tmp_path)("trigger", "site.example", "--relay", relay.address)
    assert result.exit_code == EX_NOPERM, result.output
    assert result.stdout == (
        f"site.example: relay={relay.address}[{relay.address}]:25, tls=no, attempts=1, "
        "status=refused (459 4.7.1 <site.example>: Etrn command rejected: "
        "not allowed to flush site.example)\n"
    )
    assert len(relay.queue()) == 1
    assert fake_site.recipients() == []
