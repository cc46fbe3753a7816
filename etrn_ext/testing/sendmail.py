"""A private Sendmail 8.17 relay for tests and benchmarks, without installing Sendmail.

Debian's sendmail packages are downloaded and unpacked (``install``; Postfix stays the
system MTA), and the relay runs from a temp directory with its own .cf, queue, maps and
loopback address. Its .cf is built by m4 from the lines ``etrnctl sendmail-config``
prints, so the tests check what we ship. Traps handled here (research notes):

- an unqualified host name makes every sendmail call sleep 60 s before reading the
  .cf, so every call runs in a private mount namespace with an FQDN /etc/hosts (and a
  nsswitch.conf/resolv.conf that never ask DNS) through a small wrapper script, which
  is also what etrn-ext's ``[mta] sendmail`` setting points at;
- the unpacked binary is setgid, which makes it ignore LD_LIBRARY_PATH: the private
  copy drops that bit;
- load-average limits (8 and 12 per CPU) stop a busy 2-core box: set very high;
- no syslog: ``-D file -d89.8`` (added by the wrapper to every call, daemon and queue
  runs alike) writes the log lines to the relay's log file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from etrn_ext.core.model import IntermittentDomain
from etrn_ext.core.names import parse_domain
from etrn_ext.core.sendmail_setup import SendmailSetup, access_lines, mailertable_lines, mc_lines
from etrn_ext.testing.loopback import wait_for_port
from etrn_ext.testing.smtp import send_message

PACKAGES = ("sendmail-bin", "sendmail-base", "sendmail-cf")
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / ".cache" / "sendmail"
BINARY = "usr/libexec/sendmail/sendmail"
MAKEMAP = "usr/libexec/sendmail/makemap"
CF_M4 = "usr/share/sendmail/cf/m4/cf.m4"


def sendmail_root() -> Path:
    return Path(os.environ.get("ETRN_EXT_SENDMAIL_ROOT", DEFAULT_ROOT))


def sendmail_missing(root: Path | None = None) -> str | None:
    """Why a private Sendmail cannot run here, or None."""
    root = root or sendmail_root()
    if not (root / "root" / BINARY).exists():
        return f"Sendmail is not unpacked in {root} (scripts/bootstrap.sh does it as root)"
    if shutil.which("m4") is None:
        return "m4 is not installed"
    if os.geteuid() != 0:
        return "a private Sendmail needs root (mount namespaces)"
    return None


def install(root: Path) -> None:
    """Download Debian's sendmail packages (and libraries not installed) and unpack them."""
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob("sendmail-bin_*.deb")):
        download = ["apt-get", "download", *PACKAGES]
        if subprocess.run(download, cwd=debs, capture_output=True, check=False).returncode != 0:
            subprocess.run(
                ["apt-get", "update", "-qq"], check=True, capture_output=True
            )  # fresh box
            subprocess.run(download, cwd=debs, check=True, capture_output=True)
    depends = subprocess.run(
        ["dpkg-deb", "-f", str(next(debs.glob("sendmail-bin_*.deb"))), "Depends"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for item in depends.split(","):
        package = item.split("(")[0].split("|")[0].strip()
        installed = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if (
            package.startswith("lib")
            and "install ok installed" not in installed
            and not list(debs.glob(f"{package}_*.deb"))
        ):
            subprocess.run(
                ["apt-get", "download", package], cwd=debs, check=True, capture_output=True
            )
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(root / "root")], check=True)
    (root / "root" / BINARY).chmod(0o755)  # drop setgid: it would ignore LD_LIBRARY_PATH


WRAPPER = """#!/bin/sh
# etrn-ext test wrapper: the private sendmail in a private mount namespace (FQDN hosts file,
# no DNS), always with this relay's .cf, logging to its log file (no syslog here:
# -D file -d89.8 sends syslog lines to the file). etrn-ext's [mta] sendmail points here.
export LD_LIBRARY_PATH={libs}
exec unshare -m --propagation private sh -c 'mount --bind "$0/hosts" /etc/hosts &&
  mount --bind "$0/nsswitch.conf" /etc/nsswitch.conf &&
  mount --bind "$0/resolv.conf" /etc/resolv.conf && exec "$@"' \\
  {etc} {binary} -C {cf} -D {log} -d89.8 "$@"
"""

MC_HEAD = """divert(-1)dnl
dnl private etrn-ext test relay; the ETRN lines come from etrnctl sendmail-config
divert(0)dnl
VERSIONID(`etrn-ext test relay')dnl
define(`PROCMAIL_MAILER_PATH', `{work}/bin/local-sink')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `relay.test')dnl
define(`confSERVICE_SWITCH_FILE', `{work}/etc/service.switch')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confBIND_OPTS', `-DNSRCH -DEFNAMES')dnl
define(`QUEUE_DIR', `{work}/queue')dnl
define(`confPID_FILE', `{work}/run/sendmail.pid')dnl
define(`STATUS_FILE', `{work}/run/statistics')dnl
define(`ALIAS_FILE', `{work}/etc/aliases')dnl
define(`HELP_FILE', `{work}/etc/helpfile')dnl
define(`confCW_FILE', `{work}/etc/local-host-names')dnl
define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl
define(`confDEAD_LETTER_DROP', `{work}/run/dead.letter')dnl
define(`confCONTROL_SOCKET_NAME', `{work}/run/control')dnl
define(`confQUEUE_LA', `999')dnl
define(`confREFUSE_LA', `999')dnl
define(`confLOG_LEVEL', `14')dnl
define(`confMIN_QUEUE_AGE', `0')dnl
define(`confPRIVACY_FLAGS', `goaway')dnl
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA-test, Addr={address}, Port={port}')dnl
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`access_db', `hash -T<TMPF> {work}/etc/access')dnl
FEATURE(`mailertable', `hash -o {work}/etc/mailertable')dnl
"""

MC_TAIL = """MAILER(`local')dnl
MAILER(`smtp')dnl
"""


class PrivateSendmail:
    """One private Sendmail relay; ``start()``/``stop()``, ``send()``, ``command()``."""

    def __init__(
        self,
        *,
        address: str,
        site_address: str,
        site_port: int,
        domains: Sequence[str] = ("site.test",),
        other_routes: Mapping[str, str] | None = None,
        port: int = 25,
        milter: str | None = None,
        socketmap: str = "",
        root: Path | None = None,
    ) -> None:
        self.root = (root or sendmail_root()) / "root"
        self.workdir = Path(tempfile.mkdtemp(prefix="etrn-sendmail-"))
        self.workdir.chmod(0o755)
        self.address = address
        self.port = port
        self.site_address = site_address
        self.site_port = site_port
        self.domains = [IntermittentDomain(parse_domain(name)) for name in domains]
        self.other_routes = dict(other_routes or {})
        self.queue_directory = self.workdir / "queue"
        self.socketmap = socketmap or f"unix:{self.workdir}/run/socketmap.sock"
        self.milter = milter
        self.cf = self.workdir / "etc" / "sendmail.cf"
        self.wrapper = self.workdir / "bin" / "sendmail"
        self.log = self.workdir / "log" / "sendmail.log"

    def _write(self, relative: str, text: str, mode: int = 0o644) -> None:
        path = self.workdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)

    def write_config(self) -> None:
        work = self.workdir
        for directory in ("queue/etrn", "run", "log"):
            (work / directory).mkdir(parents=True, exist_ok=True)
        for directory in ("queue", "queue/etrn"):
            (work / directory).chmod(0o700)
        self._write("etc/service.switch", "hosts files\naliases files\n")
        self._write("etc/hosts", f"127.0.0.1\trelay.test {os.uname().nodename} localhost\n")
        self._write("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n")
        self._write("etc/resolv.conf", "nameserver 127.0.0.255\noptions timeout:1 attempts:1\n")
        self._write("etc/helpfile", "")
        self._write("run/statistics", "")
        self._write("etc/local-host-names", "relay.test\n")
        self._write(
            "etc/aliases",
            f"postmaster: root\nMAILER-DAEMON: postmaster\nroot: |{work}/bin/local-sink\n",
        )
        self._write("bin/local-sink", f"#!/bin/sh\ncat >> {work}/local.mbox\n", 0o755)
        nexthop = f"[{self.site_address}]"
        mailertable = mailertable_lines(self.domains, nexthop)
        mailertable += [f"{domain}\t{route}" for domain, route in self.other_routes.items()]
        self._write("etc/mailertable", "\n".join(mailertable) + "\n")
        access = ["Connect:127\tRELAY", *access_lines(self.domains)]
        access += [f"To:{domain}\tRELAY" for domain in self.other_routes]
        self._write("etc/access", "\n".join(access) + "\n")
        setup = SendmailSetup(
            queue_directory=str(self.queue_directory),
            socketmap=self.socketmap,
            milter=self.milter,
            site_port=self.site_port,
        )
        mc = MC_HEAD.format(work=work, address=self.address, port=self.port)
        mc += "\n".join(mc_lines(setup)) + "\n" + MC_TAIL
        # MAILER() must come before MAILER_DEFINITIONS/LOCAL_* sections in the .cf
        head, _, etrn = mc.partition("dnl --- hold mail for intermittent sites")
        etrn = "dnl --- hold mail for intermittent sites" + etrn.replace(MC_TAIL, "")
        mc = head + MC_TAIL + etrn
        self._write("etc/sendmail.mc", mc)
        cf = subprocess.run(
            ["m4", str(self.root / CF_M4), str(work / "etc/sendmail.mc")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self._write("etc/sendmail.cf", cf)
        libs = ":".join(
            str(self.root / part) for part in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
        )
        self._write(
            "bin/sendmail",
            WRAPPER.format(
                libs=libs, etc=work / "etc", binary=self.root / BINARY, cf=self.cf, log=self.log
            ),
            0o755,
        )
        for table in ("access", "mailertable"):
            with (work / "etc" / table).open() as source:
                subprocess.run(
                    [
                        str(self.root / MAKEMAP),
                        "-C",
                        str(self.cf),
                        "hash",
                        str(work / "etc" / table),
                    ],
                    stdin=source,
                    check=True,
                    env={**os.environ, "LD_LIBRARY_PATH": libs},
                )
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.command("-bi")  # newaliases

    def command(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the private sendmail with ``args`` (through the wrapper)."""
        completed = subprocess.run(
            [str(self.wrapper), *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and completed.returncode != 0:
            raise RuntimeError(
                f"sendmail {' '.join(args)} failed: {completed.stderr}\n{self.log_tail()}"
            )
        return completed

    def start(self) -> PrivateSendmail:
        self.write_config()
        self.command("-bd")
        wait_for_port(self.address, self.port, timeout=30, banner=b"220")
        return self

    def pid(self) -> int | None:
        try:
            return int((self.workdir / "run" / "sendmail.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def send(self, recipients: Sequence[str], **options: str) -> str:
        """One message over real SMTP; returns the queue id from the 250 reply."""
        reply = send_message(self.address, self.port, recipients, **options)
        return reply.split()[1]  # "2.0.0 6ASJTgh0025001 Message accepted for delivery"

    def queued_files(self) -> dict[str, str]:
        """qf files per queue id -> the directory name they are in (ground truth for tests)."""
        found = {}
        for path in self.queue_directory.rglob("qf*"):
            found[path.name[2:]] = path.parent.name
        return found


def main() -> None:
    """``python -m etrn_ext.testing.sendmail install [DIR]``: used by scripts/bootstrap.sh."""
    if sys.argv[1:2] != ["install"]:
        raise SystemExit("usage: python -m etrn_ext.testing.sendmail install [DIR]")
    install(Path(sys.argv[2]) if len(sys.argv) > 2 else sendmail_root())


if __name__ == "__main__":
    main()
