"""On the site: ask the relays to send the held mail now (``etrnctl trigger``).

For each target (``domain``, ``@domain``, ``#queue``) the relays are the ones named
(``--relay``, ``site.relays``) or the domain's MX hosts other than this machine. One
SMTP session per relay asks ETRN for all of its targets; temporary failures and
unreachable relays are retried with backoff until the deadline; what each relay said
last is kept in the index so ``trigger --history`` can show it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random
import stat
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from etrn_ext.config import SiteSettings
from etrn_ext.core.errors import (
    ConfigError,
    IndexUnavailableError,
    InvalidInputError,
    LocalMtaUnavailableError,
)
from etrn_ext.core.policy import IPAddress
from etrn_ext.core.trigger import (
    RETRYABLE,
    Credentials,
    EtrnTarget,
    LocalIdentity,
    Relay,
    SessionFailure,
    Stage,
    Summary,
    TlsPolicy,
    TriggerHistory,
    TriggerOutcome,
    choose_relays,
    connection_order,
    credentials_for,
    next_retry_seconds,
    no_relay_reason,
    outcome_line,
    parse_credentials,
    parse_relay,
    parse_relays,
    parse_target,
    parse_targets,
    status_for_failure,
    status_for_reply,
    summarize,
)
from etrn_ext.net.etrn_client import (
    ClientOptions,
    SessionReport,
    ask_relay,
    make_tls_context,
    smtp_ready,
)
from etrn_ext.net.host import fully_qualified_name, host_names, is_local_address
from etrn_ext.net.resolve import CachingResolver
from etrn_ext.service.context import Context

log = logging.getLogger(__name__)

# Answers are reused within one round of tries and asked again in the next.
DNS_CACHE_SECONDS = 1.0
LOCAL_POLL_SECONDS = 0.5

Key = tuple[EtrnTarget, str]


@dataclass(frozen=True, slots=True)
class TriggerRequest:
    """What the command line asked for; ``None`` leaves the ``[site]`` setting in force."""

    targets: tuple[str, ...] = ()
    all_configured: bool = False
    relays: tuple[str, ...] = ()
    tls: str | None = None
    tls_verify: bool | None = None
    ca_file: str | None = None
    deadline_seconds: float | None = None
    wait_local: bool = False


@dataclass(frozen=True, slots=True)
class TriggerResult:
    outcomes: tuple[TriggerOutcome, ...]
    summary: Summary


@dataclass(frozen=True, slots=True)
class Network:
    """The outside world of a run: DNS, this host, the clock. Tests point it at loopback."""

    resolver: CachingResolver
    helo_name: str = "localhost"
    host_names: Callable[[], frozenset[str]] = host_names
    is_local_address: Callable[[IPAddress], bool] = is_local_address
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    random: Callable[[], float] = field(default_factory=lambda: random.SystemRandom().random)


def system_network(site: SiteSettings) -> Network:
    """The real one: the system's DNS servers, names and addresses."""
    resolver = CachingResolver(timeout=site.dns_timeout_seconds, cache_seconds=DNS_CACHE_SECONDS)
    return Network(resolver, site.helo_name or fully_qualified_name())


def read_credentials(path: str) -> dict[str, Credentials]:
    """The ``auth_file``, refused unless only its owner (this user or root) can read it."""
    try:
        with open(path, encoding="utf-8") as handle:
            info = os.fstat(handle.fileno())
            text = handle.read()
    except OSError as exc:
        raise ConfigError("site.auth_file", f"cannot read {path}: {exc.strerror}") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            "site.auth_file", f"{path} is open to group or others; chmod 600 it (it holds secrets)"
        )
    if info.st_uid not in (os.geteuid(), 0):
        raise ConfigError("site.auth_file", f"{path} must belong to the user running etrnctl")
    try:
        return parse_credentials(text)
    except InvalidInputError as exc:
        raise ConfigError("site.auth_file", f"{path}: line {exc.value}: {exc.reason}") from exc


@dataclass(frozen=True, slots=True)
class _Plan:
    """A request checked against the settings, before anything goes on the network."""

    targets: tuple[EtrnTarget, ...]
    relays: tuple[Relay, ...]
    options: ClientOptions
    credentials: Mapping[str, Credentials]
    self_names: frozenset[str]
    deadline_seconds: float


def _plan(site: SiteSettings, request: TriggerRequest, network: Network) -> _Plan:
    targets = tuple(dict.fromkeys(parse_target(text) for text in request.targets))
    if request.all_configured:
        if not site.domains.strip():
            raise ConfigError("site.domains", "is empty: there is nothing for --all to trigger")
        targets = tuple(dict.fromkeys(targets + parse_targets(site.domains)))
    relays = parse_relays(" ".join(request.relays) or site.relays, site.smtp_port)
    for target in targets:
        if target.domain is None and not relays:
            raise InvalidInputError(
                "target", str(target), "a queue has no MX records: name its relay with --relay"
            )
    tls = TlsPolicy(request.tls or site.tls)
    verify = site.tls_verify if request.tls_verify is None else request.tls_verify
    ca_file = site.tls_ca_file if request.ca_file is None else request.ca_file
    helo_name = site.helo_name or network.helo_name
    self_names = frozenset(site.self_names.replace(",", " ").split()) | {helo_name}
    return _Plan(
        targets=targets,
        relays=relays,
        options=ClientOptions(
            helo_name=helo_name,
            timeout=site.timeout_seconds,
            tls=tls,
            tls_context=None
            if tls is TlsPolicy.OFF
            else make_tls_context(verify=verify, ca_file=ca_file),
        ),
        credentials=read_credentials(site.auth_file) if site.auth_file else {},
        self_names=self_names,
        deadline_seconds=request.deadline_seconds or site.deadline_seconds,
    )


class _Run:
    """One run: rounds of tries until every pair is final or the deadline is near."""

    def __init__(self, ctx: Context, site: SiteSettings, plan: _Plan, network: Network) -> None:
        self.ctx = ctx
        self.site = site
        self.plan = plan
        self.network = network
        self.deadline = network.monotonic() + plan.deadline_seconds
        self.outcomes: dict[Key, TriggerOutcome] = {}
        self.relays: dict[str, Relay] = {}

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """This host's names, asked only when there are MX records to compare them with."""
        return self.plan.self_names | self.network.host_names()

    def run(self) -> tuple[TriggerOutcome, ...]:
        discover = list(self.plan.targets)
        retry: dict[Relay, list[EtrnTarget]] = {}
        attempt = 1
        while True:
            work = defaultdict(list, retry)
            for target in discover:
                for relay in self._relays_for(target):
                    work[relay].append(target)
            for relay, targets in work.items():
                self._ask(relay, targets)
            discover, retry = self._unfinished()
            if not discover and not retry:
                break
            delay = next_retry_seconds(
                attempt,
                self.network.random(),
                self.deadline - self.network.monotonic(),
                initial=self.site.retry_initial_seconds,
                maximum=self.site.retry_max_seconds,
            )
            if delay is None:
                break
            self.network.sleep(delay)
            attempt += 1
        order = {target: index for index, target in enumerate(self.plan.targets)}
        by_target = sorted(self.outcomes.items(), key=lambda item: order[item[0][0]])
        return tuple(outcome for _key, outcome in by_target)

    def _unfinished(self) -> tuple[list[EtrnTarget], dict[Relay, list[EtrnTarget]]]:
        discover: list[EtrnTarget] = []
        retry: dict[Relay, list[EtrnTarget]] = defaultdict(list)
        for (target, relay), outcome in self.outcomes.items():
            if outcome.status not in RETRYABLE:
                continue
            if relay:
                retry[self.relays[relay]].append(target)
            else:
                discover.append(target)
        return discover, dict(retry)

    def _record(self, target: EtrnTarget, relay: str, outcome: TriggerOutcome) -> None:
        previous = self.outcomes.get((target, relay))
        final = dataclasses.replace(outcome, attempts=previous.attempts + 1 if previous else 1)
        self.outcomes[(target, relay)] = final
        log.info("%s", outcome_line(final))

    def _relays_for(self, target: EtrnTarget) -> list[Relay]:
        """The named relays, or the MX hosts but this one; a failure is recorded, not raised."""
        if self.plan.relays or target.domain is None:
            return list(self.plan.relays)
        resolver = self.network.resolver
        lookup = resolver.mx_lookup(target.domain.ascii)
        addresses = {host: resolver.addresses(host) for _preference, host in lookup.hosts}
        local = frozenset(
            address
            for found in addresses.values()
            for address in found
            if self.network.is_local_address(address)
        )
        choice = choose_relays(lookup.hosts, addresses, LocalIdentity(self.names, local))
        reason = no_relay_reason(
            str(target.domain), lookup.problem, lookup.temporary, bool(lookup.hosts), choice
        )
        if reason:
            status, text = reason
            self._record(
                target, "", TriggerOutcome(str(target), "", status, text, self.ctx.clock())
            )
            return []
        self.outcomes.pop((target, ""), None)
        return [Relay(host, self.site.smtp_port) for host in choice.relays]

    def _ask(self, relay: Relay, targets: Sequence[EtrnTarget]) -> None:
        label = str(relay)
        self.relays[label] = relay
        literal = relay.address
        addresses = (
            (literal,) if literal else connection_order(self.network.resolver.addresses(relay.host))
        )
        if addresses:
            options = dataclasses.replace(
                self.plan.options, credentials=credentials_for(relay, self.plan.credentials)
            )
            report = ask_relay(
                relay,
                addresses,
                [target.argument for target in targets],
                options,
                lambda: self.deadline - self.network.monotonic(),
            )
        else:
            no_address = f"no address for {relay.host} in DNS"
            report = SessionReport(failure=SessionFailure(Stage.CONNECT, no_address))
        if not report.dialled and all((target, label) in self.outcomes for target in targets):
            return  # out of time before dialling: what the last try said stands
        now = self.ctx.clock()
        for target in targets:
            answer = report.answers.get(target.argument)
            code: int | None
            if answer is not None:
                status, reply, code = status_for_reply(answer.code), str(answer), answer.code
            else:
                failure = report.failure or SessionFailure(Stage.ETRN, "no answer")
                status, reply, code = status_for_failure(failure), failure.text, failure.code
            outcome = TriggerOutcome(
                target=str(target),
                relay=label,
                status=status,
                reply=reply,
                at=now,
                address=report.address,
                code=code,
                pending_messages=answer.pending_messages if answer else None,
                encrypted=report.encrypted,
            )
            self._record(target, label, outcome)


def wait_for_local_mta(site: SiteSettings, network: Network) -> None:
    """Wait until the local MTA greets, so the mail a relay flushes is not refused at boot."""
    local = parse_relay(site.local_smtp)
    give_up = network.monotonic() + site.local_wait_seconds
    while not smtp_ready(local, timeout=min(site.timeout_seconds, 2.0)):
        if network.monotonic() + LOCAL_POLL_SECONDS > give_up:
            raise LocalMtaUnavailableError(str(local), site.local_wait_seconds)
        network.sleep(LOCAL_POLL_SECONDS)


def trigger(ctx: Context, request: TriggerRequest, network: Network | None = None) -> TriggerResult:
    """Ask every relay for every target; the outcomes are also logged and kept in the index."""
    site = ctx.settings.site
    network = network or system_network(site)
    plan = _plan(site, request, network)
    if request.wait_local:
        wait_for_local_mta(site, network)
    outcomes = _Run(ctx, site, plan, network).run()
    try:
        ctx.store.record_triggers(ctx.node, outcomes)
    except IndexUnavailableError as exc:
        log.warning("trigger outcomes not kept in the history: %s", exc)
    return TriggerResult(outcomes, summarize(outcome.status for outcome in outcomes))


def history(ctx: Context, targets: Sequence[str] = ()) -> list[TriggerHistory]:
    """What each relay said last, per target, and when it last answered and flushed."""
    wanted = [str(parse_target(text)) for text in targets]
    return ctx.store.trigger_history(ctx.node, wanted)
