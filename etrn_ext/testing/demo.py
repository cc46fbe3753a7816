"""The demo: an ISP relay holds a ship's mail until the ship comes online and sends ETRN.

Everything runs on loopback with throwaway directories and the embedded SQLite index:
a private Postfix relay, a fake site (the ship's own mail server), real SMTP clients,
and the real ``etrnctl``. Nothing on the system is configured or left behind.
Run it with ``./demo.sh`` (it needs root, as Postfix does).
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from etrn_ext.testing.loopback import free_loopback_address
from etrn_ext.testing.postfix import PrivatePostfix, postfix_missing
from etrn_ext.testing.site import SITE_PORT, FakeSite

DOMAIN = "site.example"
ETRNCTL = str(Path(sys.executable).with_name("etrnctl"))


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def etrnctl(config: Path, *args: str) -> None:
    print(f"$ etrnctl {' '.join(args)}", flush=True)
    completed = subprocess.run(
        [ETRNCTL, "--config", str(config), *args], check=False, text=True, capture_output=True
    )
    output = (completed.stdout + completed.stderr).rstrip()
    if output:
        print(textwrap.indent(output, "  "), flush=True)
    if completed.returncode not in (0, 1):
        raise SystemExit(f"etrnctl {args[0]} failed with exit status {completed.returncode}")


def send_etrn(relay: PrivatePostfix, site_address: str) -> None:
    """What the site's own server does when its link comes up: EHLO, ETRN, QUIT."""
    source = (site_address, 0)
    with smtplib.SMTP(relay.address, relay.port, timeout=30, source_address=source) as client:
        client.ehlo("mx.site.example")
        code, reply = client.docmd("ETRN", DOMAIN)
    print(f"  site -> relay: ETRN {DOMAIN}\n  relay -> site: {code} {reply.decode()}", flush=True)


def wait_for_held(relay: PrivatePostfix, count: int) -> None:
    """Until ``count`` messages sit in the deferred queue (held by defer_transports)."""
    relay.wait_for_queue(
        lambda queue: len(queue) == count and all(e["queue_name"] == "deferred" for e in queue)
    )


def run_demo() -> None:
    site = FakeSite(free_loopback_address((SITE_PORT,)))
    relay = PrivatePostfix(
        address=free_loopback_address((25,)),
        site_address=site.address,
        site_port=site.port,
        domains=[DOMAIN, "other.example"],
        name="etrn-demo",
    )
    workdir = Path(tempfile.mkdtemp(prefix="etrn-demo-"))
    config = workdir / "etrn-ext.toml"
    config.write_text(
        f'[index]\nurl = "sqlite:///{workdir}/index.sqlite"\n'
        f'[mta]\nconfig_directory = "{relay.config_directory}"\nmail_log = "{relay.maillog}"\n'
        'node_name = "relay.demo"\n'
    )
    try:
        say(f"A private Postfix relay on {relay.address}:25 holds mail for {DOMAIN}")
        relay.start()
        print(f"  config: {relay.config_directory}   index: {workdir}/index.sqlite")
        etrnctl(
            config,
            "domain",
            "add",
            DOMAIN,
            "--allow",
            f"{site.address}/32",
            "--quota-messages",
            "5000",
            "--quota-bytes",
            "500M",
            "--contact",
            "ops@isp.example",
            "--outage",
            "3d",
        )
        etrnctl(config, "doctor")

        say(f"The ship ({site.address}) is offline; mail for it arrives at the relay")
        for number, (sender, recipients) in enumerate(
            [
                ("alice@example.org", ["captain@site.example"]),
                ("bob@example.net", ["crew@site.example", "cook@site.example"]),
                ("harbour@example.com", ["captain@site.example", "agent@other.example"]),
                ("alice@example.org", ["engineer@site.example"]),
            ],
            start=1,
        ):
            queue_id = relay.send(recipients, sender=sender, subject=f"message {number}")
            print(f"  {sender} -> {', '.join(recipients)}: queued as {queue_id}")
        wait_for_held(relay, 4)
        etrnctl(config, "sync")
        etrnctl(config, "list")
        etrnctl(config, "summary")

        say("The ship's link comes up: its mail server starts and sends ETRN to the relay")
        site.start()
        send_etrn(relay, site.address)
        site.wait_for_recipients(5, timeout=30)
        for message in site.messages:
            print(f"  site received: from {message.mail_from} for {', '.join(message.rcpt_tos)}")
        etrnctl(config, "sync")
        etrnctl(config, "list", "--state", "delivered")

        say("More mail arrives; the relay's admin flushes it and waits for the result")
        relay.send(["captain@site.example"], subject="late news")
        relay.send(["temp-crew@site.example"], subject="for a mailbox the site defers")
        wait_for_held(relay, 2)
        etrnctl(config, "flush", DOMAIN, "--wait", "5")
        etrnctl(config, "summary")
        say("Done: the index drained except the recipient the site itself defers (4xx)")
    finally:
        relay.stop()
        site.stop()
        relay.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    missing = postfix_missing()
    if missing:
        raise SystemExit(f"demo: {missing}")
    run_demo()


if __name__ == "__main__":
    main()
