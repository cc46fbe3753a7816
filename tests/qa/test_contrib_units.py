"""The daemons' systemd units fit the MTA set-up etrnctl prints."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from etrn_ext.core.sendmail_setup import SendmailSetup

SYSTEMD = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def service_settings(*unit_files: Path) -> dict[str, str]:
    """A unit's [Service] settings as systemd merges it with drop-ins: the last one wins."""
    settings: dict[str, str] = {}
    for path in unit_files:
        section = ""
        for line in path.read_text().splitlines():
            if line.startswith("["):
                section = line
            elif section == "[Service]" and "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                settings[key.strip()] = value.strip()
    return settings


def test_the_milter_unit_runs_as_the_postfix_mail_owner() -> None:
    assert service_settings(SYSTEMD / "etrn-milter.service")["User"] == "postfix"


def test_on_sendmail_the_milter_unit_makes_the_socket_directory_the_mc_names() -> None:
    settings = service_settings(
        SYSTEMD / "etrn-milter.service", SYSTEMD / "etrn-milter.service.d" / "sendmail.conf"
    )
    milter = SendmailSetup().milter
    assert milter is not None
    socket_directory = PurePosixPath(milter.removeprefix("unix:")).parent
    assert socket_directory == PurePosixPath("/run", settings["RuntimeDirectory"])
    # The milter writes the index that etrn-socketmap (root: it reads the queue) writes too.
    socketmap = service_settings(SYSTEMD / "etrn-socketmap.service")
    assert settings["User"] == socketmap.get("User", "root") == "root"
