"""A private Postfix relay for tests and the demo: ``postfix -c DIR`` on its own loopback address.

It is configured the way ETRN_README (and ``etrnctl postfix-config``) says: the
intermittent domains are relay domains routed to an ``etrn-only`` transport that is
listed in ``defer_transports``, so their mail is held until a flush. Everything it
writes stays under ``workdir``: configuration, queue, data and its own mail log
(postlogd, no syslog needed). Starting it needs root, as Postfix itself does.

Traps handled here (see the research notes): ``inet_interfaces`` cannot name an
address other than 127.0.0.1, so the listener is bound in master.cf; transport
entries need ``.domain`` too for subdomains; postfix prints errors only to its log
when stderr is not a terminal, so failures quote the log.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from etrn_ext.testing.loopback import wait_for_port
from etrn_ext.testing.smtp import send_message

POSTFIX_BINARIES = ("postfix", "postconf", "postqueue", "postsuper", "postmap")
SBIN = "/usr/sbin"

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{address}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
etrn-only unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_missing() -> str | None:
    """Why a private Postfix cannot run here, or ``None`` when it can."""
    missing = [name for name in POSTFIX_BINARIES if not os.access(f"{SBIN}/{name}", os.X_OK)]
    if missing:
        return f"Postfix is not installed (missing {', '.join(missing)})"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    return None


def _postfix_version() -> str:
    output = subprocess.run(
        [f"{SBIN}/postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    major, minor = output.split(".")[:2]
    return f"{major}.{minor}"


class PrivatePostfix:
    """One private relay instance; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        address: str,
        site_address: str,
        site_port: int,
        domains: Sequence[str] = ("site.example",),
        port: int = 25,
        main_cf: Mapping[str, str] | None = None,
        transport: Sequence[str] | None = None,
        maps: Mapping[str, Sequence[str]] | None = None,
        omit_services: Sequence[str] = (),
        name: str = "etrn-test",
    ) -> None:
        # Postfix's own users must reach the queue, so the default is a fresh 0755
        # directory under /tmp (pytest's temp dirs are readable by root only).
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="etrn-postfix-"))
        self.address = address
        self.port = port
        self.site_address = site_address
        self.site_port = site_port
        self.domains = list(domains)
        self.extra_main_cf = dict(main_cf or {})
        self.transport = transport
        self.maps = dict(maps or {})
        self.omit_services = omit_services
        self.name = name
        self.config_directory = self.workdir / "etc"
        self.queue_directory = self.workdir / "spool"
        self.data_directory = self.workdir / "data"
        self.maillog = self.workdir / "maillog"

    # --- configuration ----------------------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        """Parameters of main.cf; ``main_cf=`` overrides them (``{config}``: the config dir)."""
        transport = f"hash:{self.config_directory}/transport"
        parameters = {
            "compatibility_level": _postfix_version(),
            "queue_directory": str(self.queue_directory),
            "data_directory": str(self.data_directory),
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.workdir),
            "syslog_name": self.name,
            "myhostname": "relay.test",
            "mydomain": "relay.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "smtp_bind_address": self.address,
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtp_dns_support_level": "disabled",
            # Nothing but the site's mail leaves this relay: bounces to senders are discarded.
            "default_transport": "discard",
            "relay_domains": ", ".join(self.domains),
            "fast_flush_domains": "$relay_domains",
            "transport_maps": transport,
            "defer_transports": "etrn-only",
            "enable_long_queue_ids": "yes",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_etrn_restrictions": "permit_mynetworks, reject",
        }
        parameters.update(
            {
                name: value.replace("{config}", str(self.config_directory))
                for name, value in self.extra_main_cf.items()
            }
        )
        return parameters

    @property
    def nexthop(self) -> str:
        """Where held mail goes when flushed: the fake site."""
        return f"etrn-only:[{self.site_address}]:{self.site_port}"

    def transport_lines(self) -> list[str]:
        """Transport map lines: ``transport=`` from the constructor, else domain and .domain."""
        if self.transport is not None:
            return [line.format(nexthop=self.nexthop) for line in self.transport]
        nexthop = self.nexthop
        lines = []
        for domain in self.domains:
            lines += [f"{domain}\t{nexthop}", f".{domain}\t{nexthop}"]
        return lines

    def write_config(self) -> None:
        for directory in (self.config_directory, self.queue_directory, self.data_directory):
            directory.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.data_directory, postfix_user.pw_uid, postfix_user.pw_gid)
        main = "".join(f"{key} = {value}\n" for key, value in self.main_cf().items())
        (self.config_directory / "main.cf").write_text(main)
        master = MASTER_CF.format(address=self.address, port=self.port).splitlines()
        kept = [line for line in master if line.split()[0] not in self.omit_services]
        (self.config_directory / "master.cf").write_text("\n".join(kept) + "\n")
        tables = {"transport": self.transport_lines(), **self.maps}
        for name, lines in tables.items():
            (self.config_directory / name).write_text("".join(f"{line}\n" for line in lines))
        # Postfix re-reads a configuration file until it is over a second old (so as not
        # to read it half-written): date our files back, or every command sleeps 1-2 s.
        past = time.time() - 10
        for written in ("main.cf", "master.cf", *tables):
            os.utime(self.config_directory / written, (past, past))
        for name in tables:
            self.command("postmap", str(self.config_directory / name))

    # --- life cycle -------------------------------------------------------------------

    def command(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a Postfix program against this instance (``-c`` added for you)."""
        argv = [f"{SBIN}/{program}", "-c", str(self.config_directory)]
        completed = subprocess.run(
            [*argv, *args], capture_output=True, text=True, check=False, timeout=60
        )
        if check and completed.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv + list(args))} failed ({completed.returncode}): "
                f"{completed.stderr.strip()}\n--- maillog tail ---\n{self.log_tail()}"
            )
        return completed

    def start(self, timeout: float = 30.0) -> PrivatePostfix:
        self.write_config()
        self.command("postfix", "start")
        wait_for_port(self.address, self.port, timeout=timeout, banner=b"220")
        return self

    def reload(self) -> None:
        """Rewrite the configuration and make the running instance read it."""
        self.write_config()
        self.command("postfix", "reload")

    def master_pid(self) -> int | None:
        try:
            return int((self.data_directory / "master.lock").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = 20.0) -> None:
        pid = self.master_pid()
        if pid is None:
            return
        self.command("postfix", "stop", check=False)
        deadline = time.monotonic() + timeout
        while pid and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and Path(f"/proc/{pid}").exists():
            self.command("postfix", "abort", check=False)

    def __enter__(self) -> PrivatePostfix:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- looking at it ----------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.maillog.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no maillog)"

    def queue(self) -> list[dict[str, Any]]:
        """``postqueue -j`` as a list: the ground truth tests compare the index with."""
        output = self.command("postqueue", "-j").stdout
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def wait_for_queue(self, predicate: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll ``postqueue -j`` until ``predicate(queue)`` is true; returns the queue."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.queue()
            if predicate(entries) or time.monotonic() > deadline:
                return entries
            time.sleep(0.1)

    def wait_for_log(self, text: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.maillog.exists() and text in self.maillog.read_text(errors="replace"):
                return True
            time.sleep(0.1)
        return False

    # --- sending mail -----------------------------------------------------------------

    def send(self, recipients: Sequence[str], **options: str) -> str:
        """Send one message over real SMTP; returns the queue id from the 250 reply."""
        return queued_as(send_message(self.address, self.port, recipients, **options))


def queued_as(reply: str) -> str:
    """The queue id in ``250 2.0.0 Ok: queued as ID`` (and BDAT's ``... bytes queued as ID``)."""
    return reply.rsplit("queued as", 1)[1].strip().split()[0]
