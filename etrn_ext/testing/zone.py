"""A small authoritative DNS server on loopback (UDP and TCP) serving one test zone.

It answers from a dnspython zone: records that exist, NOERROR with no answer for a
name without the type asked, NXDOMAIN for a name not in the zone, and SERVFAIL for the
names a test lists in ``servfail``. Point ``dns.resolver.Resolver(configure=False)``
at it with ``resolver()``; nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.zone

from etrn_ext.testing.loopback import free_loopback_address

POLL_SECONDS = 0.1
SOA_AND_NS = "@ 300 IN SOA ns.{origin} hostmaster.{origin} 1 300 300 3000 300\n@ 300 IN NS ns\n"


class ZoneServer:
    """Serves ``records`` (zone-file lines relative to ``origin``) on a 127.x.y.z address."""

    def __init__(self, origin: str, records: str, *, servfail: Iterable[str] = ()) -> None:
        self.origin = dns.name.from_text(origin)
        text = SOA_AND_NS.format(origin=self.origin.to_text()) + records
        self.zone = dns.zone.from_text(text, origin=self.origin, relativize=False)
        self.servfail = {dns.name.from_text(name, self.origin) for name in servfail}
        self.address = ""
        self.port = 0
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    # --- answering ----------------------------------------------------------------------

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        node = self.zone.get_node(question.name)
        if question.name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif not question.name.is_subdomain(self.origin):
            response.set_rcode(dns.rcode.REFUSED)
        elif node is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            rdataset = node.get_rdataset(dns.rdataclass.IN, question.rdtype)
            if rdataset is not None:
                response.answer.append(
                    dns.rrset.from_rdata_list(question.name, rdataset.ttl, list(rdataset))
                )
        return response.to_wire()

    # --- serving ------------------------------------------------------------------------

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        for _ in range(20):
            address = free_loopback_address(())
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((address, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.bind((address, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            self.address, self.port = address, port
            return udp, tcp
        raise RuntimeError("no loopback address with a free UDP and TCP port")

    def start(self) -> ZoneServer:
        udp, tcp = self._bind()
        tcp.listen(8)
        for sock in (udp, tcp):
            sock.settimeout(POLL_SECONDS)
        self._sockets = [udp, tcp]
        self._threads = [
            threading.Thread(target=self._serve_udp, args=(udp,), daemon=True),
            threading.Thread(target=self._serve_tcp, args=(tcp,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def _serve_udp(self, udp: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = udp.recvfrom(65535)
            except TimeoutError:
                continue
            udp.sendto(self.answer(wire), peer)

    def _serve_tcp(self, tcp: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _peer = tcp.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(1.0)
                try:
                    header = connection.recv(2, socket.MSG_WAITALL)
                    (length,) = struct.unpack("!H", header)
                    reply = self.answer(connection.recv(length, socket.MSG_WAITALL))
                    connection.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    continue

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> ZoneServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def resolver(self, timeout: float = 2.0) -> dns.resolver.Resolver:
        """A resolver that asks only this server (``configure=False``: no /etc/resolv.conf)."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.address]
        resolver.port = self.port
        resolver.lifetime = timeout
        resolver.timeout = timeout
        return resolver
