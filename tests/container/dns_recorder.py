"""A resolver that answers nothing and records every query: one JSON line on stdout per datagram.

Runs inside a container from the stand-in base image (standard library only) on the checks'
internal network; the service container's resolv.conf names it. It never replies, as a network
without egress would not, so a lookup in the service waits out its resolver timeout instead of
failing fast, and nothing is ever resolved.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time


def question(packet: bytes) -> tuple[str, int]:
    """The first question's name and type, or ("?", 0) for a packet that is not a DNS query."""
    labels: list[str] = []
    offset = 12
    try:
        while packet[offset]:
            length = packet[offset]
            labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        (qtype,) = struct.unpack_from("!H", packet, offset + 1)
    except (IndexError, struct.error):
        return "?", 0
    return ".".join(labels) + ".", qtype


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 53
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print(json.dumps({"event": "listening", "port": port, "t": time.time()}), flush=True)
    while True:
        packet, (host, source_port) = sock.recvfrom(4096)
        name, qtype = question(packet)
        record = {"event": "query", "t": time.time(), "src": host, "sport": source_port, "qname": name, "qtype": qtype}
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
