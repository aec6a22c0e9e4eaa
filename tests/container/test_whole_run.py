"""What the whole run showed, over every service container started before: logs, outbound
traffic, and the probes against what was measured."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.container import egress
from tests.container.harness import EGRESS_WINDOW, Context, Network, Service, seconds, verdict

pytestmark = pytest.mark.container


def test_json_logs(main: Service, network: Network, context: Context) -> None:
    """Every stderr line of every service container is a JSON object (LOG_FORMAT=json, from the manifest)."""
    total = 0
    offenders: list[str] = []
    stdout_lines = 0
    for service in network.services:
        stdout, stderr = service.logs()
        stdout_lines += len(stdout.splitlines())
        for line in stderr.splitlines():
            total += 1
            try:
                value = json.loads(line)
            except ValueError:
                value = None
            if not isinstance(value, dict):
                offenders.append(f"{service.label}: {line[:200]!r}")
    distinct = list(dict.fromkeys(o.split(": ", 1)[1] for o in offenders))
    verdict(
        not offenders,
        f"LOG_FORMAT={context.spec.env.get('LOG_FORMAT', '?')}: {total - len(offenders)} of {total} stderr lines of "
        f"{len(network.services)} containers are JSON objects ({stdout_lines} lines on stdout)"
        + (
            f"; {len(offenders)} are not, {len(distinct)} distinct, e.g. {'; '.join(distinct[:3])}" if offenders else ""
        ),
    )


def test_no_egress(main: Service, network: Network, context: Context, egress_window: None) -> None:
    """No DNS query and no outbound packet, in the main container's first EGRESS_WINDOW s of
    start-up and load or later, from any service container; the detectors proven by the canary."""
    assert network.capture is not None
    by_ip: dict[str, list[Service]] = {}
    for service in network.services:
        by_ip.setdefault(service.container.ip, []).append(service)

    def owner(ip: str, t: float) -> Service | None:
        for service in by_ip.get(ip, []):
            if service.container.started_at - 1 <= t <= service.removed_at + 1:
                return service
        return None

    def early(service: Service, t: float) -> bool:
        return service is main and t - main.container.started_at <= EGRESS_WINDOW

    queries: list[tuple[dict[str, Any], Service]] = []
    for query in network.dns_queries():
        if (sender := owner(query["src"], query["t"])) is not None:
            queries.append((query, sender))
    packets: list[tuple[egress.Packet, Service]] = []
    for packet in egress.outbound(network.capture.snapshot(), set(by_ip), context.spec.port):
        if (sender := owner(packet.src, packet.t)) is not None:
            packets.append((packet, sender))
    dns_packets = [(p, s) for p, s in packets if p.protocol == "udp" and p.dport == 53]
    other = [(p, s) for p, s in packets if not (p.protocol == "udp" and p.dport == 53)]
    first: dict[str, str] = {}
    for query, service in queries:
        key = f"DNS {query['qname']}"
        first.setdefault(
            key, f"{key} (first from {service.label} at +{query['t'] - service.container.started_at:.1f} s)"
        )
    for packet, service in other:
        key = f"{packet.protocol} to {packet.dst}:{packet.dport}"
        first.setdefault(
            key, f"{packet.describe()} (from {service.label} at +{packet.t - service.container.started_at:.1f} s)"
        )
    window = (
        f"{sum(early(s, q['t']) for q, s in queries)} DNS queries, {sum(early(s, p.t) for p, s in other)} other "
        f"outbound packets in the main container's first {EGRESS_WINDOW:g} s of start-up and load"
    )
    whole = (
        f"over all {len(network.services)} service containers: {len(queries)} queries recorded by the resolver, "
        f"{len(dns_packets)} DNS datagrams and {len(other)} other packets captured"
    )
    verdict(
        network.canary_ok and not queries and not packets,
        f"{window}; {whole}"
        + (f"; found: {'; '.join(first.values())}" if first else "")
        + f"; {network.no_route_out()}; detectors {'proven' if network.canary_ok else 'NOT proven'}: "
        + network.canary_detail,
    )


def longest_failure(samples: list[tuple[float, bool, float]]) -> float:
    """The longest stretch of failing samples, from the first one's start to the last one's end."""
    longest, began = 0.0, None
    for t, ok, latency in sorted(samples):
        if ok:
            began = None
            continue
        began = t if began is None else began
        longest = max(longest, t + latency - began)
    return longest


def test_probes(main: Service, network: Network, context: Context) -> None:
    """The probe paths answer; the startup budget covers the measured start; liveness (sampled every
    second under load) never fails long enough for the kubelet to restart the pod."""
    probes = context.spec.probes
    problems = []
    parts = []
    startup = probes.get("startupProbe")
    if startup:
        parts.append(
            f"startupProbe {startup.path} allows {startup.budget:g} s ({startup.period:g} s x "
            f"{startup.failure_threshold}), port open after {seconds(main.healthz_at)}"
        )
        if not main.healthz_at < startup.budget:
            problems.append("the startup probe's budget is shorter than the measured start")
    readiness = probes.get("readinessProbe")
    if readiness:
        parts.append(
            f"readinessProbe {readiness.path}: 200 after {seconds(main.ready_at)}, 503 while a killed worker "
            f"was replaced: {network.kill_seen}"
        )
    liveness = probes.get("livenessProbe")
    if liveness:
        samples = [sample for service in network.services for sample in service.liveness]
        failed = [sample for sample in samples if not sample[1] or sample[2] > liveness.timeout]
        worst = max((sample[2] for sample in samples), default=math.nan)
        # The kubelet restarts the container after failure_threshold failed probes in a row,
        # period seconds apart: a stall that long (sampled here once a second) would kill it.
        fatal = (liveness.failure_threshold - 1) * (liveness.period or 10) + liveness.timeout
        stall = longest_failure(samples)
        parts.append(
            f"livenessProbe {liveness.path} (timeout {liveness.timeout:g} s, restart after {fatal:g} s failing): "
            f"{len(samples)} samples under load, slowest {seconds(worst)}, {len(failed)} over the timeout, "
            f"longest failing stretch {seconds(stall)}"
        )
        if stall >= fatal:
            problems.append(f"liveness failed for {seconds(stall)}: the kubelet would restart the container")
    for probe in probes.values():
        if not probe.path.startswith("/"):
            problems.append(f"{probe.kind} path {probe.path!r}")
    verdict(not problems, "; ".join(parts + problems))
