"""Detectors for traffic the service should never send: a packet capture on the checks' bridge.

The checks' containers sit on a Docker network created with `--internal`: Docker gives it no
NAT and drops, in the host's FORWARD chain, anything from its bridge to another network, so
nothing leaves the machine. A container on it still has a default route (to the bridge), so any
connection attempt the service makes, to any address, puts a packet on that bridge. This module
reads every frame on the bridge from the host (an AF_PACKET socket in promiscuous mode, so that
frames between two containers are seen too), from before the first container starts until the
end of the run. It needs root and nothing else (no tcpdump, no ptrace of the service, no
overhead inside the container).

DNS queries are caught twice: the service container's resolver (`--dns`, via Docker's embedded
DNS, which forwards from the container's own address) is dns_recorder.py, which answers nothing
and logs each query, and each query is also a UDP packet to port 53 on the bridge.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}


@dataclass(frozen=True)
class Packet:
    t: float
    src: str
    dst: str
    protocol: str
    sport: int
    dport: int
    flags: str  # TCP flags, e.g. "S" for a connection attempt

    def describe(self) -> str:
        ports = f":{self.sport} -> {self.dst}:{self.dport}" if self.dport else f" -> {self.dst}"
        flags = f" [{self.flags}]" if self.flags else ""
        return f"{self.protocol} {self.src}{ports}{flags}"


def parse(frame: bytes, t: float) -> Packet | None:
    """An Ethernet frame's IPv4/IPv6 header and ports; None for ARP and other non-IP frames."""
    if len(frame) < 14:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    offset = 14
    if ethertype == 0x8100 and len(frame) >= 18:  # VLAN tag
        (ethertype,) = struct.unpack_from("!H", frame, 16)
        offset = 18
    if ethertype == ETH_P_IP and len(frame) >= offset + 20:
        header_length = (frame[offset] & 0x0F) * 4
        number = frame[offset + 9]
        src = socket.inet_ntop(socket.AF_INET, frame[offset + 12 : offset + 16])
        dst = socket.inet_ntop(socket.AF_INET, frame[offset + 16 : offset + 20])
        transport = offset + header_length
    elif ethertype == ETH_P_IPV6 and len(frame) >= offset + 40:
        number = frame[offset + 6]
        src = socket.inet_ntop(socket.AF_INET6, frame[offset + 8 : offset + 24])
        dst = socket.inet_ntop(socket.AF_INET6, frame[offset + 24 : offset + 40])
        transport = offset + 40
    else:
        return None
    sport = dport = 0
    flags = ""
    if number in (6, 17) and len(frame) >= transport + 4:
        sport, dport = struct.unpack_from("!HH", frame, transport)
    if number == 6 and len(frame) >= transport + 14:
        bits = frame[transport + 13]
        flags = "".join(name for bit, name in zip((1, 2, 4, 8, 16), "FSRPA", strict=True) if bits & bit)
    return Packet(t, src, dst, PROTOCOLS.get(number, str(number)), sport, dport, flags)


class BridgeCapture:
    """Every IP packet seen on one host interface, in a background thread."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.packets: list[Packet] = []
        self.frames = 0
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind((interface, 0))
        index = socket.if_nametoindex(interface)
        self._sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b""))
        self._sock.settimeout(0.2)
        self._running = True
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name=f"capture-{interface}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while self._running:
            try:
                frame, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                if self._running:
                    time.sleep(0.05)  # the interface went away: the run is ending
                continue
            # What the host itself sends into the bridge (the checks' requests) is not of interest.
            if address[2] == socket.PACKET_OUTGOING:
                continue
            packet = parse(frame, time.time())
            with self._lock:
                self.frames += 1
                if packet is not None:
                    self.packets.append(packet)

    def snapshot(self) -> list[Packet]:
        with self._lock:
            return list(self.packets)

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self._sock.close()


def outbound(packets: list[Packet], sources: set[str], serving_port: int) -> list[Packet]:
    """Packets the service containers sent other than answers on their serving port."""
    found = []
    for packet in packets:
        if packet.src not in sources:
            continue
        if packet.protocol == "tcp" and packet.sport == serving_port:
            continue  # answers to the checks' own requests
        found.append(packet)
    return found
