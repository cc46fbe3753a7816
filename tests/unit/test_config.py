"""Configuration is validated completely at start-up and errors name the key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from etrn_ext.config import DEFAULT_CONFIG_PATH, describe, load_settings, parse_settings
from etrn_ext.core.errors import ConfigError


def test_defaults_without_a_file() -> None:
    settings = load_settings(environ={})
    assert settings.source is None
    assert settings.mta.postqueue == "/usr/sbin/postqueue"
    assert settings.index.url.startswith("sqlite:////var/lib/etrn-ext/")


def test_file_values_and_explicit_keys(write_config: Callable[[str], Path]) -> None:
    path = write_config('[mta]\nconfig_directory = "/tmp/pf"\ncommand_timeout_seconds = 5\n')
    settings = load_settings(str(path), environ={})
    assert settings.mta.config_directory == "/tmp/pf"
    assert settings.mta.command_timeout_seconds == 5.0
    assert settings.explicit == {"mta.config_directory", "mta.command_timeout_seconds"}
    shown = {info.name: info for info in describe(settings)}
    assert shown["mta.config_directory"].explicit
    assert not shown["mta.postqueue"].explicit


def test_environment_names_the_file(write_config: Callable[[str], Path]) -> None:
    path = write_config('[log]\nlevel = "debug"\n')
    assert load_settings(environ={"ETRN_EXT_CONFIG": str(path)}).log.level == "debug"
    assert (
        load_settings(str(path), environ={"ETRN_EXT_CONFIG": "/nonexistent"}).log.level == "debug"
    )


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        pytest.param(
            '[mta]\npostqueue_comand = "/x"\n',
            "mta.postqueue_comand",
            "did you mean mta.postqueue",
            id="misspelt-key",
        ),
        pytest.param(
            '[mtaa]\nkind = "postfix"\n', "mtaa", "did you mean mta", id="misspelt-section"
        ),
        pytest.param('[mta]\nkind = "exim"\n', "mta.kind", "must be one of", id="bad-choice"),
        pytest.param(
            '[mta]\npostqueue = "postqueue"\n', "mta.postqueue", "absolute path", id="relative-path"
        ),
        pytest.param(
            "[mta]\ncommand_timeout_seconds = 0\n",
            "mta.command_timeout_seconds",
            "greater than 0",
            id="zero-timeout",
        ),
        pytest.param(
            '[mta]\ncommand_timeout_seconds = "5"\n',
            "mta.command_timeout_seconds",
            "must be a number",
            id="string-number",
        ),
        pytest.param(
            "[index]\nbatch_max_rows = 1.5\n",
            "index.batch_max_rows",
            "whole number",
            id="float-int",
        ),
        pytest.param(
            "[index]\nbatch_max_rows = true\n",
            "index.batch_max_rows",
            "whole number",
            id="bool-int",
        ),
        pytest.param(
            '[index]\nurl = "index.sqlite"\n', "index.url", "SQLAlchemy URL", id="bad-url"
        ),
        pytest.param(
            '[mta]\nnode_name = "-relay"\n', "mta.node_name", "must not start", id="bad-node"
        ),
        pytest.param('mta = "x"\n', "mta", "must be a table", id="section-not-table"),
        pytest.param(
            '[site]\ndomains = "ok.example, -qbad"\n',
            "site.domains",
            "'-qbad': must not start with '-'",
            id="site-bad-domain",
        ),
        pytest.param(
            '[site]\nrelays = "mx.example:0"\n', "site.relays", "port must be", id="site-port"
        ),
        pytest.param('[site]\ntls = "maybe"\n', "site.tls", "one of", id="site-tls"),
        pytest.param(
            '[site]\nauth_file = "creds"\n', "site.auth_file", "absolute", id="site-auth-file"
        ),
        pytest.param(
            '[site]\nself_names = "gw.site.example, bad name!"\n',
            "site.self_names",
            "'name!': label",
            id="site-self-names",
        ),
        pytest.param("[site]\nsmtp_port = 0\n", "site.smtp_port", "port number", id="site-port-0"),
        pytest.param(
            "[index]\nbusy_timeout_seconds = inf\n",
            "index.busy_timeout_seconds",
            "finite number greater than 0",
            id="infinite-timeout",
        ),
        pytest.param(
            "[etrn]\nclient_window_seconds = nan\n",
            "etrn.client_window_seconds",
            "finite number greater than 0",
            id="nan-window",
        ),
        pytest.param(
            '[policyd]\nquota_action = "452 4.2.2 quota for {x} exceeded"\n',
            "policyd.quota_action",
            "unknown placeholder {x}",
            id="quota-action-placeholder",
        ),
        pytest.param(
            '[etrn]\nrefuse_action = "459 4.7.1 no {0}"\n',
            "etrn.refuse_action",
            "unknown placeholder {0}",
            id="refuse-action-positional",
        ),
        pytest.param(
            '[etrn]\nunregistered_action = "550 5.7.1 {domain.name} unknown"\n',
            "etrn.unregistered_action",
            "only {domain}",
            id="unregistered-action-attribute",
        ),
        pytest.param(
            '[etrn]\nrefuse_action = "459 4.7.1 not {domain"\n',
            "etrn.refuse_action",
            "only {domain}",
            id="refuse-action-unclosed-brace",
        ),
    ],
)
def test_bad_values_name_the_key(
    text: str, key: str, reason: str, write_config: Callable[[str], Path]
) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(str(path), environ={})
    assert caught.value.key == key
    assert reason in str(caught.value)
    assert str(path) in str(caught.value)


def test_unreadable_and_broken_files(write_config: Callable[[str], Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(str(tmp_path / "missing.toml"), environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(str(write_config("[mta\n")), environ={})
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[report]\nfrom_address = "m\u00fcller@relay.example"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(str(latin1), environ={})


def test_reply_templates_may_use_the_domain_and_escaped_braces(
    write_config: Callable[[str], Path],
) -> None:
    path = write_config('[etrn]\nunregistered_action = "550 5.7.1 {{{domain}}} not served here"\n')
    settings = load_settings(str(path), environ={})
    assert settings.etrn.unregistered_action == "550 5.7.1 {{{domain}}} not served here"


def test_default_path_is_documented_constant() -> None:
    assert DEFAULT_CONFIG_PATH == "/etc/etrn-ext/etrn-ext.toml"
    assert parse_settings({}).explicit == frozenset()


def test_the_site_section(write_config: Callable[[str], Path]) -> None:
    path = write_config(
        '[site]\ndomains = "ship.example, @crew.ship.example, #ship"\n'
        'relays = "mx1.isp.example, [2001:db8::1]:587"\ntls = "required"\n'
    )
    site = load_settings(str(path), environ={}).site
    assert (site.tls, site.tls_verify, site.smtp_port, site.deadline_seconds) == (
        "required",
        True,
        25,
        300.0,
    )
