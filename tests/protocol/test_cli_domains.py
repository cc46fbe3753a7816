"""etrnctl domain and config commands, driven through click's CliRunner on a real SQLite index."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from etrn_ext.cli.main import cli


@pytest.fixture
def etrnctl(tmp_path: Path) -> Callable[..., Result]:
    config = tmp_path / "etrn-ext.toml"
    config.write_text(
        f'[index]\nurl = "sqlite:///{tmp_path}/index.sqlite"\n[mta]\nnode_name = "relay.test"\n'
    )

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    return run


def test_add_then_list_json_round_trips(etrnctl: Callable[..., Result]) -> None:
    added = etrnctl(
        "domain",
        "add",
        "site.example",
        "--allow",
        "192.0.2.0/24",
        "--quota-messages",
        "5000",
        "--quota-bytes",
        "500M",
        "--contact",
        "ops@site.example",
    )
    assert added.exit_code == 0, added.output
    listed = etrnctl("domain", "list", "--json")
    assert listed.exit_code == 0
    [entry] = json.loads(listed.stdout)
    assert entry["name"] == "site.example"
    assert entry["allow"] == ["192.0.2.0/24"]
    assert entry["quota"] == {"messages": 5000, "bytes": 524288000}
    assert entry["contacts"] == ["ops@site.example"]
    assert entry["include_subdomains"] is False
    assert entry["held"] == {"messages": 0, "recipients": 0, "bytes": 0, "oldest_arrival": None}
    # What list prints can be typed back in: re-creating from the JSON gives the same entry.
    assert etrnctl("domain", "remove", "site.example").exit_code == 0
    args = [
        "domain",
        "add",
        entry["name"],
        "--quota-messages",
        str(entry["quota"]["messages"]),
        "--quota-bytes",
        str(entry["quota"]["bytes"]),
    ]
    for rule in entry["allow"]:
        args += ["--allow", rule]
    for contact in entry["contacts"]:
        args += ["--contact", contact]
    assert etrnctl(*args).exit_code == 0
    [again] = json.loads(etrnctl("domain", "list", "--json").stdout)
    assert {k: v for k, v in again.items() if k not in ("created", "updated")} == {
        k: v for k, v in entry.items() if k not in ("created", "updated")
    }


def test_people_get_an_aligned_table(etrnctl: Callable[..., Result]) -> None:
    etrnctl("domain", "add", "site.example", "--quota-messages", "10")
    etrnctl("domain", "add", "bücher.example", "--subdomains")
    lines = etrnctl("domain", "list").stdout.splitlines()
    assert lines[0].split() == [
        "DOMAIN",
        "SUBDOMAINS",
        "MSGS",
        "RCPTS",
        "SIZE",
        "OLDEST",
        "QUOTA",
        "USE",
        "ALLOW",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["site.example", "xn--bcher-kva.example"]
    assert len({line.index(line.split()[1]) for line in lines}) == 1  # second column aligned


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("-f", id="leading-dash"),
        pytest.param("a;b", id="semicolon"),
        pytest.param("a" * 300, id="300-chars"),
        pytest.param("xn--garbage.example", id="xn-garbage"),
        pytest.param("$(id).example", id="shell"),
    ],
)
def test_hostile_names_exit_65_and_write_nothing(
    etrnctl: Callable[..., Result], name: str, tmp_path: Path
) -> None:
    result = etrnctl("domain", "add", "--", name)
    assert result.exit_code == 65
    assert "invalid domain name" in result.stderr
    assert not (tmp_path / "index.sqlite").exists()


def test_hostile_rule_writes_nothing(etrnctl: Callable[..., Result]) -> None:
    etrnctl("domain", "add", "site.example")
    result = etrnctl("domain", "set", "site.example", "--quota-messages", "7", "--allow", "-oQ/tmp")
    assert result.exit_code == 65
    assert (
        json.loads(etrnctl("domain", "show", "site.example", "--json").stdout)["quota"]["messages"]
        is None
    )


def test_set_show_and_remove(etrnctl: Callable[..., Result]) -> None:
    etrnctl("domain", "add", "site.example", "--allow", "192.0.2.0/24")
    changed = etrnctl(
        "domain",
        "set",
        "site.example",
        "--allow",
        "sasl:siteuser",
        "--disallow",
        "192.0.2.0/24",
        "--subdomains",
        "--note",
        "ship Aurora",
        "--json",
    )
    assert changed.exit_code == 0
    data = json.loads(changed.stdout)
    assert (data["allow"], data["include_subdomains"], data["note"]) == (
        ["sasl:siteuser"],
        True,
        "ship Aurora",
    )
    shown = etrnctl("domain", "show", "site.example")
    assert "allow:" in shown.stdout
    assert "sasl:siteuser" in shown.stdout
    assert etrnctl("domain", "remove", "site.example").stdout == "site.example: removed\n"
    assert etrnctl("domain", "list", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(("domain", "show", "ghost.example"), 66, id="unknown-domain"),
        pytest.param(("domain", "set", "ghost.example", "--note", "x"), 66, id="set-unknown"),
        pytest.param(("domain", "remove", "ghost.example"), 66, id="remove-unknown"),
    ],
)
def test_unknown_domain_exit_codes(
    etrnctl: Callable[..., Result], args: tuple[str, ...], code: int
) -> None:
    result = etrnctl(*args)
    assert result.exit_code == code
    assert "not a registered intermittent domain" in result.stderr


def test_adding_twice_exits_73(etrnctl: Callable[..., Result]) -> None:
    etrnctl("domain", "add", "site.example")
    result = etrnctl("domain", "add", "SITE.example")
    assert result.exit_code == 73
    assert "already registered" in result.stderr


def test_misspelt_config_key_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[mta]\npostqueue_comand = "/usr/sbin/postqueue"\n')
    result = CliRunner().invoke(cli, ["--config", str(bad), "domain", "list"])
    assert result.exit_code == 78
    assert "mta.postqueue_comand" in result.stderr
    checked = CliRunner().invoke(cli, ["--config", str(bad), "config", "check"])
    assert checked.exit_code == 78


def test_config_show_like_postconf(etrnctl: Callable[..., Result]) -> None:
    everything = etrnctl("config", "show").stdout.splitlines()
    assert "mta.postqueue = /usr/sbin/postqueue" in everything
    assert etrnctl("config", "show", "-n").stdout.splitlines() == [
        next(line for line in everything if line.startswith("index.url")),
        "mta.node_name = relay.test",
    ]
    assert json.loads(etrnctl("config", "show", "--json").stdout)["mta.kind"] == "postfix"


def test_config_check_names_missing_commands(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[mta]\npostconf = "/nonexistent/postconf"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 78
    assert "mta.postconf" in result.stderr
