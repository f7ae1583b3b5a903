"""Stage 2, the ports: can the mail program connect, and which port would work instead?

Asks `ScanPorts` (the configured port and the alternatives, all at once, with a
greeting on each open alternative) and concludes whether the configured port
accepts connections; when it does not, it names the best alternative that
speaks SMTP (`suggested`). Sets the `ports` facts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.asking import Asking, expect
from lab.diagnosis.planner.facts import Findings, secs
from lab.diagnosis.planner.greeting import MANGLED_TEXT
from lab.diagnosis.planner.tls_facts import security_of
from lab.diagnosis.requests import PortProbe, PortsResult, ScanPorts

# The ports a mail program could be told to use instead: the configured one plus these.
ALTERNATIVE_PORTS: tuple[int, ...] = (25, 465, 587, 2525)
# Which alternative to recommend first: submission with STARTTLS (RFC 6409), then
# implicit TLS (RFC 8314), then the unofficial 2525, and relaying port 25 last.
PORT_PREFERENCE: tuple[int, ...] = (587, 465, 2525, 25)
IMPLICIT_TLS_PORTS = frozenset({465})
# How `lab.net` (and the kernel, via strerror) words ENETUNREACH.
NETWORK_UNREACHABLE = re.compile(r"network (is )?unreachable", re.IGNORECASE)


def port_list(configured: int, alternatives: Sequence[int] = ALTERNATIVE_PORTS) -> tuple[int, ...]:
    """The configured port first, then the alternatives, without repeats."""
    return tuple(dict.fromkeys((configured, *alternatives)))


def scan(findings: Findings, address: str) -> Asking[bool]:
    """Connect to every port at once; True when the configured one is open."""
    settings = findings.settings
    ports = port_list(settings.port, findings.alternatives)
    result = expect((yield ScanPorts(address, settings.port, ports, settings.timeout)), PortsResult)
    return _conclude(findings, result)


def _conclude(findings: Findings, result: PortsResult) -> bool:
    settings = findings.settings
    by_port = {probe.port: probe for probe in result.ports}
    configured = by_port.get(settings.port) or PortProbe(settings.port, "error", 0.0)
    rows = [_row(probe) for probe in sorted(result.ports, key=lambda p: p.port)]
    opened = [row["port"] for row in rows if row["state"] == "open"]
    others = [port for port in opened if port != settings.port]
    suggested = _suggest(rows, settings.port)
    implicit = next((row["port"] for row in rows if row["smtp"] and row["mode"] == "tls"), None)
    facts: dict[str, Any] = {
        "address": result.address,
        "configured": settings.port,
        "state": configured.state,
        "ms": configured.ms,
        "detail": configured.detail,
        "timeout": result.timeout,
        "results": rows,
        "by_port": {str(row["port"]): row for row in rows},
        "open": opened,
        "others_open": others,
        "timed_out": [row["port"] for row in rows if row["state"] == "timeout"],
        "refused": [row["port"] for row in rows if row["state"] == "refused"],
        "all_timeout": all(row["state"] == "timeout" for row in rows),
        "all_refused": all(row["state"] == "refused" for row in rows),
        "suggested": suggested,
        "implicit_port": implicit,
        # which ICMP unreachable answered: "network" (no path to its network), "host"
        "unreachable": _unreachable_kind(configured),
    }
    findings.facts["ports"] = facts
    listed = ", ".join(str(row["port"]) for row in rows)
    tried = (
        f"Opened TCP connections to {result.address} on ports {listed} at the same time "
        f"(timeout {secs(result.timeout)} s); greeted on the open alternatives."
    )
    title = f"Connect to {settings.server}:{settings.port}"
    summary = "; ".join(_port_phrase(row) for row in rows)
    if configured.state == "open":
        proves = f"Port {settings.port} accepts connections ({configured.ms:.0f} ms). {summary}."
        findings.emit(Probe.PORTS, Status.OK, title, tried, proves, duration=result.duration)
        return True
    alternative = ""
    if suggested is not None:
        alternative = (
            f" Port {suggested['port']} answered in {suggested['ms']:.0f} ms and speaks SMTP "
            f"({suggested['label']})."
        )
    if configured.state == "timeout":
        proves = (
            f"Nothing answered on port {settings.port} within {secs(result.timeout)} s: the "
            "connection attempt was silently dropped, typically by a firewall or the "
            f"provider.{alternative}"
        )
    elif configured.state == "refused":
        proves = (
            f"Port {settings.port} refused the connection: nothing listens there, or a "
            f"firewall answers with a reset.{alternative}"
        )
    elif facts["unreachable"] == "network":
        proves = (
            f"A router on the way answered at once that the network of {result.address} is "
            "unreachable (ICMP network unreachable): no path leads out, on any port. Not a "
            "timeout (nothing dropped) and not refused (no server said no)."
        )
    elif configured.state == "unreachable":
        proves = f"There is no route to {result.address}: the network path is broken."
    else:
        proves = f"The connection to port {settings.port} failed: {configured.detail}."
    return findings.fail(
        Probe.PORTS,
        configured.state,
        configured.detail or proves,
        title=title,
        tried=tried,
        proves=f"{proves} {summary}.",
        duration=result.duration,
    )


def _unreachable_kind(probe: PortProbe) -> str | None:
    """ "network" or "host" for an unreachable port, from the connector's words; else None."""
    if probe.state != "unreachable":
        return None
    return "network" if NETWORK_UNREACHABLE.search(probe.detail or "") else "host"


def _row(probe: PortProbe) -> dict[str, Any]:
    """One port as facts, with what it said when greeted."""
    greeting = probe.greeting
    return {
        "port": probe.port,
        "state": probe.state,
        "ms": probe.ms,
        "detail": probe.detail,
        "mode": greeting.mode if greeting else None,
        "banner_code": greeting.code if greeting else None,
        "banner": greeting.text if greeting else None,
        "starttls": greeting.starttls if greeting else None,
        "auth": list(greeting.auth) if greeting else None,
        "smtp": bool(greeting and greeting.code == 220),
        "security": (
            security_of(greeting.mode, greeting.starttls)
            if greeting and greeting.code == 220
            else None
        ),
    }


def _suggest(rows: list[dict[str, Any]], configured: int) -> dict[str, Any] | None:
    """The best port to use instead: answering 220 unmangled, encrypted first, by preference."""
    usable = [
        row
        for row in rows
        if row["smtp"]
        and row["port"] != configured
        and not MANGLED_TEXT.search(row["banner"] or "")
    ]
    order = {port: index for index, port in enumerate(PORT_PREFERENCE)}
    usable.sort(
        key=lambda row: (row["security"] == "none", order.get(row["port"], 99), row["port"])
    )
    if not usable:
        return None
    row = usable[0]
    security = row["security"]
    label = {
        "tls": "SSL/TLS (implicit TLS)",
        "starttls": "STARTTLS",
        "none": "no encryption (none offered)",
    }[security]
    return {"port": row["port"], "security": security, "ms": row["ms"], "label": label}


def _port_phrase(row: Mapping[str, Any]) -> str:
    port, state = row["port"], row["state"]
    if state == "open":
        if row["banner_code"] is not None:
            what = row["security"] or f"greets {row['banner_code']}"
            return f"{port} open ({row['ms']:.0f} ms, {what})"
        return f"{port} open ({row['ms']:.0f} ms)"
    return {"timeout": f"{port} timed out", "refused": f"{port} refused"}.get(
        state, f"{port} {state}"
    )
