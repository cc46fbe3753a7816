"""Who "this machine" is, for telling the site's own MX records from its relays."""

from __future__ import annotations

import socket

from etrn_ext.core.policy import IPAddress


def host_names() -> frozenset[str]:
    """The names this host calls itself (``gethostname`` and the fully qualified name)."""
    return frozenset(name for name in (socket.gethostname(), socket.getfqdn()) if name)


def fully_qualified_name() -> str:
    """The name to greet relays with when ``site.helo_name`` is not set."""
    return socket.getfqdn() or "localhost"


def is_local_address(address: IPAddress) -> bool:
    """Whether ``address`` belongs to this host: only then can a socket be bound to it.

    Binding asks the kernel itself, for every interface and alias, IPv4 and IPv6, with
    no parsing of ``ip addr`` (a host with ``net.ipv4.ip_nonlocal_bind=1`` would claim
    every IPv4 address: name such relays with ``--relay`` or ``site.relays``).
    """
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True
