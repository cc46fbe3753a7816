"""Shared fixtures: warning guard, config files, real databases, private Postfix, fake site."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from etrn_ext.cli.main import cli
from etrn_ext.config import IndexSettings, MtaSettings, Settings, parse_settings
from etrn_ext.core.model import IntermittentDomain
from etrn_ext.core.names import parse_domain
from etrn_ext.core.postfix_setup import milter_main_cf, policyd_main_cf, recipient_map_lines
from etrn_ext.core.registry import DomainChanges
from etrn_ext.index.store import IndexStore
from etrn_ext.index.writer import BatchWriter
from etrn_ext.service.context import Context
from etrn_ext.service.domains import add_domain
from etrn_ext.service.etrn import EtrnHook
from etrn_ext.testing.daemons import DaemonProcess
from etrn_ext.testing.loopback import free_loopback_address, free_port
from etrn_ext.testing.mailsink import MailSink
from etrn_ext.testing.postfix import PrivatePostfix, postfix_missing
from etrn_ext.testing.postgres import PrivatePostgres, postgres_missing
from etrn_ext.testing.relay import EtrnRelay
from etrn_ext.testing.sendmail import PrivateSendmail, sendmail_missing
from etrn_ext.testing.site import SITE_PORT, FakeSite
from etrn_ext.testing.tls import TestCa

IN_CI = os.environ.get("CI") == "true"


def wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> object:
    """Poll ``predicate`` until it is truthy or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    return predicate()


def require(missing: str | None) -> None:
    """Skip when a real dependency is missing, except in CI, where that is a failure."""
    if missing is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {missing}", pytrace=False)
    pytest.skip(missing)


# --- warnings fail tests --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_unexpected_warnings(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Any etrn_ext record at WARNING or above fails the test unless it says ``expect_log``."""
    caplog.set_level(logging.INFO, logger="etrn_ext")
    yield
    expected = [(mark.args[0], mark.args[1]) for mark in request.node.iter_markers("expect_log")]
    for record in caplog.get_records("call"):
        if record.levelno < logging.WARNING or not record.name.startswith("etrn_ext"):
            continue
        message = record.getMessage()
        if not any(record.levelname == level and text in message for level, text in expected):
            pytest.fail(f"unexpected log record: {record.levelname} {record.name}: {message}")


# --- configuration --------------------------------------------------------------------


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a TOML configuration into the test's directory and return its path."""

    def write(text: str, name: str = "etrn-ext.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


# --- databases ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PrivatePostgres]:
    require(postgres_missing())
    cluster = PrivatePostgres().start()
    yield cluster
    cluster.stop()
    cluster.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty index, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/index.sqlite"
    cluster: PrivatePostgres = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()


@pytest.fixture
def store(index_url: str) -> Iterator[IndexStore]:
    opened = IndexStore.open(IndexSettings(url=index_url))
    yield opened
    opened.close()


# --- a private Postfix relay and the site behind it -------------------------------------


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    """A submission host on loopback that keeps what notify and the digest send."""
    sink = MailSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def fake_site() -> Iterator[FakeSite]:
    site = FakeSite(free_loopback_address((SITE_PORT,))).start()
    yield site
    site.stop()


@pytest.fixture
def make_relay(fake_site: FakeSite) -> Iterator[Callable[..., PrivatePostfix]]:
    """Start private Postfix relays for this test; all are stopped at its end."""
    require(postfix_missing())
    started: list[PrivatePostfix] = []

    def make(*, start: bool = True, **options: object) -> PrivatePostfix:
        """A relay; ``start=False`` only writes its configuration (enough for postconf)."""
        relay = PrivatePostfix(
            address=free_loopback_address((25,)),
            site_address=fake_site.address,
            site_port=fake_site.port,
            **options,  # type: ignore[arg-type]
        )
        started.append(relay)
        if not start:
            relay.write_config()
            return relay
        return relay.start()

    yield make
    for relay in started:
        relay.stop()
        relay.remove()


# --- etrnctl pointed at a private relay ---------------------------------------------------


class Etrnctl:
    """Runs etrnctl (in-process, CliRunner) with a config for one private relay."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(
            cli, ["--config", str(self.config), *args], catch_exceptions=False
        )

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code in (0, 1), result.output
        return json.loads(result.stdout)


def relay_config(
    relay: PrivatePostfix, directory: Path, index_url: str | None = None, index_lines: str = ""
) -> Path:
    """An etrn-ext config that drives ``relay`` and keeps its index in ``directory``."""
    path = directory / f"etrn-ext-{relay.address}.toml"
    url = index_url or f"sqlite:///{directory}/index.sqlite"
    path.write_text(
        f'[index]\nurl = "{url}"\n{index_lines}'
        f'[mta]\nconfig_directory = "{relay.config_directory}"\n'
        f'mail_log = "{relay.maillog}"\nnode_name = "relay.test"\n'
    )
    return path


@pytest.fixture
def etrnctl_for(tmp_path: Path) -> Callable[[PrivatePostfix], Etrnctl]:
    def make(relay: PrivatePostfix) -> Etrnctl:
        return Etrnctl(relay_config(relay, tmp_path))

    return make


# --- a relay with etrn-policyd in front of it, configured by postfix-config's lines ----------


class PolicyRelay:
    """A private relay set up with ``etrnctl postfix-config``'s lines for one of our daemons."""

    def __init__(self, relay: PrivatePostfix, daemon: DaemonProcess, etrnctl: Etrnctl) -> None:
        self.relay = relay
        self.daemon = daemon
        self.etrnctl = etrnctl


@pytest.fixture
def make_policy_relay(
    make_relay: Callable[..., PrivatePostfix], tmp_path: Path
) -> Iterator[Callable[..., PolicyRelay]]:
    daemons: list[DaemonProcess] = []

    def make(
        domains: dict[str, tuple[str, ...]], index_lines: str = "", **relay_options: object
    ) -> PolicyRelay:
        """``domains`` maps each registered domain to its ``etrnctl domain add`` options;
        ``index_lines`` go into the ``[index]`` section."""
        relay = make_relay(start=False, domains=list(domains), **relay_options)
        entries = [IntermittentDomain(parse_domain(name)) for name in domains]
        relay.extra_main_cf.update(
            policyd_main_cf(
                relay.main_cf(), str(relay.config_directory), "unix:private/etrn-policy"
            )
        )
        relay.maps["etrn-recipients"] = recipient_map_lines(entries)
        relay.start()
        socket_path = relay.queue_directory / "private" / "etrn-policy"
        config = relay_config(relay, tmp_path, index_lines=index_lines)
        config.write_text(
            config.read_text() + f'[policyd]\nlisten = "{socket_path}"\n'
            "usage_refresh_seconds = 0.5\nregistry_refresh_seconds = 0.5\n"
        )
        etrnctl = Etrnctl(config)
        for name, options in domains.items():
            assert etrnctl("domain", "add", name, *options).exit_code == 0
        daemon = DaemonProcess(
            "etrn-policyd", config, socket_path, tmp_path / "policyd.log"
        ).start()
        daemons.append(daemon)
        return PolicyRelay(relay, daemon, etrnctl)

    yield make
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def make_milter_relay(
    make_relay: Callable[..., PrivatePostfix], tmp_path: Path
) -> Iterator[Callable[..., PolicyRelay]]:
    """A relay with postfix-config's etrn-milter lines, and etrn-milter running."""
    daemons: list[DaemonProcess] = []

    def make(domains: Sequence[str], **relay_options: object) -> PolicyRelay:
        relay = make_relay(start=False, domains=list(domains), **relay_options)
        relay.extra_main_cf.update(milter_main_cf(relay.main_cf(), "unix:private/etrn-milter"))
        relay.start()
        socket_path = relay.queue_directory / "private" / "etrn-milter"
        config = relay_config(relay, tmp_path)
        config.write_text(config.read_text() + f'[milter]\nlisten = "unix:{socket_path}"\n')
        etrnctl = Etrnctl(config)
        for name in domains:
            assert etrnctl("domain", "add", name).exit_code == 0
        daemon = DaemonProcess("etrn-milter", config, socket_path, tmp_path / "milter.log").start()
        daemons.append(daemon)
        return PolicyRelay(relay, daemon, etrnctl)

    yield make
    for daemon in daemons:
        daemon.stop()


# --- a private Sendmail relay with etrn-milter and etrn-socketmap --------------------------


class SendmailRelay:
    def __init__(
        self,
        relay: PrivateSendmail,
        etrnctl: Etrnctl,
        milter: DaemonProcess,
        socketmap: DaemonProcess,
    ) -> None:
        self.relay = relay
        self.etrnctl = etrnctl
        self.milter = milter
        self.socketmap = socketmap


@pytest.fixture
def make_sendmail_relay(
    fake_site: FakeSite, tmp_path: Path
) -> Iterator[Callable[..., SendmailRelay]]:
    require(sendmail_missing())
    made: list[SendmailRelay] = []

    def make(
        domains: dict[str, tuple[str, ...]],
        other_routes: dict[str, str],
        *,
        more_config: str = "",
        socketmap_wrapper: Sequence[str] = (),
    ) -> SendmailRelay:
        """``more_config``: TOML sections to add; ``socketmap_wrapper``: see DaemonProcess."""
        run = Path(tempfile.mkdtemp(prefix="etrn-sm-run-"))
        run.chmod(0o755)
        relay = PrivateSendmail(
            address=free_loopback_address((25,)),
            site_address=fake_site.address,
            site_port=fake_site.port,
            domains=list(domains),
            other_routes=other_routes,
            milter=f"unix:{run}/milter.sock",
            socketmap=f"unix:{run}/socketmap.sock",
        )
        relay.write_config()
        config = tmp_path / "sendmail-etrn-ext.toml"
        config.write_text(
            f'[index]\nurl = "sqlite:///{tmp_path}/index.sqlite"\n'
            f'[mta]\nkind = "sendmail"\nsendmail = "{relay.wrapper}"\nsendmail_cf = "{relay.cf}"\n'
            f'mail_log = "{relay.log}"\nnode_name = "relay.test"\n'
            f'[milter]\nlisten = "unix:{run}/milter.sock"\nholding_mailers = "etrnhold"\n'
            f'[socketmap]\nlisten = "{run}/socketmap.sock"\n' + more_config
        )
        etrnctl = Etrnctl(config)
        for name, options in domains.items():
            assert etrnctl("domain", "add", name, *options).exit_code == 0
        milter = DaemonProcess(
            "etrn-milter", config, run / "milter.sock", tmp_path / "milter.log"
        ).start()
        socketmap = DaemonProcess(
            "etrn-socketmap",
            config,
            run / "socketmap.sock",
            tmp_path / "socketmap.log",
            socketmap_wrapper,
        ).start()
        relay.start()
        made.append(SendmailRelay(relay, etrnctl, milter, socketmap))
        return made[-1]

    yield make
    for setup in made:
        setup.relay.stop()
        setup.milter.stop()
        setup.socketmap.stop()
        setup.relay.remove()


# --- etrn-socketmap's hook in-process, on a Sendmail queue in the test's directory ----------


@pytest.fixture
def make_socketmap_hook(tmp_path: Path) -> Iterator[Callable[..., EtrnHook]]:
    """The ETRN hook as etrn-socketmap builds it. Its Sendmail queue is ``tmp_path/mqueue``
    (put qf files there); ``sendmail`` is ``true``, so a flush runs nothing. Keyword
    arguments replace Settings sections, except ``mta``: a dict of changes to it."""
    made: list[EtrnHook] = []
    queue = tmp_path / "mqueue"
    queue.mkdir()
    cf = tmp_path / "sendmail.cf"
    cf.write_text(f"O QueueDirectory={queue}\n")

    def make(domains: dict[str, DomainChanges], **sections: Any) -> EtrnHook:
        mta = MtaSettings(
            node_name="relay.test", kind="sendmail", sendmail="/bin/true", sendmail_cf=str(cf)
        )
        settings = Settings(
            index=IndexSettings(url=f"sqlite:///{tmp_path}/index.sqlite"),
            mta=dataclasses.replace(mta, **sections.pop("mta", {})),
            **sections,
        )
        ctx = Context(settings, actor="test")
        for name, changes in domains.items():
            add_domain(ctx, name, changes)
        registry = {domain.name.ascii: domain for domain in ctx.store.list_domains()}
        writer = BatchWriter(ctx.store, max_rows=10, queue_limit=100).start()
        made.append(EtrnHook(ctx, writer, lambda: registry))
        return made[-1]

    yield make
    for hook in made:
        hook.close()
        hook.writer.close()
        hook.ctx.close()


# --- the site's side: fake relays with a test CA -------------------------------------------

ETRN_RELAY_PORT = 2525


@pytest.fixture
def test_ca(tmp_path: Path) -> TestCa:
    return TestCa(tmp_path)


@pytest.fixture
def make_etrn_relay(test_ca: TestCa) -> Iterator[Callable[..., EtrnRelay]]:
    """Start fake relays (``testing.EtrnRelay``) for this test; ``tls=True`` gives a CA cert."""
    started: list[EtrnRelay] = []

    def make(*, tls: bool = False, address: str | None = None, **options: Any) -> EtrnRelay:
        if address is None:
            address = free_loopback_address((ETRN_RELAY_PORT,))
            port = ETRN_RELAY_PORT
        else:
            port = free_port(address)
        context = test_ca.server_context(["relay.test"], [address]) if tls else None
        relay = EtrnRelay(address, port, tls_context=context, **options).start()
        started.append(relay)
        return relay

    yield make
    for relay in started:
        relay.stop()


@pytest.fixture
def site_context(tmp_path: Path) -> Iterator[Callable[..., Context]]:
    """A service context for the site, with quick timeouts; ``[site]`` keys as keywords."""
    opened: list[Context] = []

    def make(**site: Any) -> Context:
        settings = parse_settings(
            {
                "index": {"url": f"sqlite:///{tmp_path}/site.sqlite"},
                "mta": {"node_name": "mx.site.test"},
                "site": {
                    "helo_name": "mx.site.test",
                    "timeout_seconds": 2.0,
                    "deadline_seconds": 1.0,
                    "retry_initial_seconds": 0.05,
                    "retry_max_seconds": 0.2,
                    **site,
                },
            }
        )
        context = Context(settings, actor="test")
        opened.append(context)
        return context

    yield make
    for context in opened:
        context.close()
