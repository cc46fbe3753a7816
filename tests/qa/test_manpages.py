"""The man pages render cleanly and document every command, option, exit status and setting."""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

import click
import docutils.core
import pytest
from click.testing import CliRunner

from etrn_ext.cli.main import EXIT_CODES, TRIGGER_EXIT_CODES, cli
from etrn_ext.config import Settings, describe

MAN = Path(__file__).resolve().parents[2] / "man"


@pytest.mark.parametrize("source", sorted(MAN.glob("*.rst")), ids=lambda p: p.name)
def test_renders_without_warnings(source: Path) -> None:
    warnings = io.StringIO()
    output = docutils.core.publish_string(
        source.read_text(),
        source_path=str(source),
        writer="manpage",
        settings_overrides={"warning_stream": warnings, "report_level": 2, "halt_level": 5},
    )
    assert warnings.getvalue() == ""
    assert b".TH" in output


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{path} ")
    return found


def _section(page: str, title: str) -> str:
    """One top-level section of a man page's source, without its heading."""
    after_title = page.split(f"\n{title}\n", 1)[1].split("\n", 1)[1]
    return re.split(r"^[A-Z][A-Z ]*\n=+$", after_title, maxsplit=1, flags=re.MULTILINE)[0]


def _command_entries(page: str) -> dict[str, str]:
    """Each etrnctl command's own entries on the page (term line and indented body)."""
    entries: dict[str, str] = {}
    for entry in re.split(r"\n(?=\S)", page):
        term = entry.split("\n", 1)[0]
        for command in re.findall(r"\*\*etrnctl ([a-z][a-z -]*?)\*\*", term):
            entries[command] = entries.get(command, "") + entry
    return entries


def _undocumented_options(command: click.Command, text: str) -> list[str]:
    return [
        parameter.opts[0]
        for parameter in command.params
        if isinstance(parameter, click.Option)
        and not any(f"**{name}**" in text for name in parameter.opts + parameter.secondary_opts)
    ]


def test_every_command_and_option_is_documented() -> None:
    page = (MAN / "etrnctl.1.rst").read_text()
    entries = _command_entries(page)
    missing = []
    for path, command in _commands(cli):
        if isinstance(command, click.Group) and not command.params:
            continue  # documented by its commands' entries
        if path not in entries:
            missing.append(f"command: etrnctl {path}")
        missing += [
            f"option: etrnctl {path} {option}"
            for option in _undocumented_options(command, entries.get(path, ""))
        ]
    global_options = _section(page, "GLOBAL OPTIONS")
    missing += [f"global option {option}" for option in _undocumented_options(cli, global_options)]
    assert missing == []


def test_options_count_only_in_their_commands_entry() -> None:
    page = (
        "**etrnctl sync** [**--json**]\n    Sync.\n\n"
        "**etrnctl flush** *DOMAIN*\n    Flush.\n\n    **--wait**\n        Wait.\n"
    )
    entries = _command_entries(page)
    assert _undocumented_options(cli.commands["flush"], entries["flush"]) == ["--id", "--json"]
    assert _undocumented_options(cli.commands["sync"], entries["sync"]) == []


def _exit_statuses() -> dict[int, str]:
    """What each exit status is documented to mean in etrnctl(1)."""
    section = _section((MAN / "etrnctl.1.rst").read_text(), "EXIT STATUS")
    return {
        int(code): " ".join(text.split())
        for code, text in re.findall(r"^(\d+)\n((?:    .*\n|\n)+)", section, re.MULTILINE)
    }


def test_every_exit_status_is_documented() -> None:
    errors = {code for _error, code in EXIT_CODES}
    assert errors | set(TRIGGER_EXIT_CODES.values()) | {0, 1, 2, 70} <= set(_exit_statuses())


def test_a_missing_mta_command_exits_as_documented(tmp_path: Path) -> None:
    config = tmp_path / "etrn-ext.toml"
    config.write_text(
        f'[index]\nurl = "sqlite:///{tmp_path}/index.sqlite"\n'
        '[mta]\npostqueue = "/nonexistent/postqueue"\npostconf = "/nonexistent/postconf"\n'
    )
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["--config", str(config), "domain", "add", "site.example"]).exit_code
        == 0
    )
    sync = runner.invoke(cli, ["--config", str(config), "sync"])
    flush = runner.invoke(cli, ["--config", str(config), "flush", "site.example"])
    check = runner.invoke(cli, ["--config", str(config), "config", "check"])
    assert (sync.exit_code, flush.exit_code, check.exit_code) == (69, 69, 78)
    statuses = _exit_statuses()
    assert "missing" in statuses[69]
    assert "config check" in statuses[78]


def test_every_setting_is_documented() -> None:
    page = (MAN / "etrn-ext.conf.5.rst").read_text()
    for info in describe(Settings()):
        section, key = info.name.split(".")
        assert f"[{section}]" in page
        assert f"**{key}**" in page, info.name


def test_contrib_postfix_lines_match_the_generator() -> None:
    from etrn_ext.core.model import IntermittentDomain
    from etrn_ext.core.names import parse_domain
    from etrn_ext.core.postfix_setup import render_postfix_config

    contrib = MAN.parent / "contrib" / "postfix" / "etrn-relay.conf"
    example = IntermittentDomain(parse_domain("site.example"), include_subdomains=True)
    assert contrib.read_text() == render_postfix_config(
        [example], milter_service="unix:private/etrn-milter"
    )


def test_contrib_sendmail_lines_match_the_generator() -> None:
    from etrn_ext.core.model import IntermittentDomain
    from etrn_ext.core.names import parse_domain
    from etrn_ext.core.sendmail_setup import render_sendmail_config

    contrib = MAN.parent / "contrib" / "sendmail" / "etrn-relay.mc"
    example = IntermittentDomain(parse_domain("site.example"), include_subdomains=True)
    assert contrib.read_text() == render_sendmail_config([example])


def _etrnctl_lines() -> list[tuple[str, list[str]]]:
    """Every etrnctl command line in contrib/ (cron lines, systemd ExecStart=)."""
    found = []
    contrib = MAN.parent / "contrib"
    units = [path for path in contrib.glob("systemd/**/*") if path.is_file()]  # and drop-ins
    for path in sorted([*contrib.glob("cron.d/*"), *units]):
        for line in path.read_text().splitlines():
            words = shlex.split(line.lstrip("#").split(">", 1)[0]) if "etrnctl " in line else []
            starts = [i for i, word in enumerate(words) if word.endswith("etrnctl")]
            if starts and not line.lstrip().startswith("# "):
                found.append((f"{path.name}: {line.strip()}", words[starts[0] + 1 :]))
    return found


@pytest.mark.parametrize(
    ("where", "args"), [pytest.param(w, a, id=w.split(": ")[0]) for w, a in _etrnctl_lines()]
)
def test_contrib_command_lines_exist(where: str, args: list[str]) -> None:
    if args[:1] == ["--config"]:
        args = args[2:]
    command = cli.commands.get(args[0])
    assert command is not None, where
    known = {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}
    assert {a for a in args[1:] if a.startswith("--")} <= known, where
