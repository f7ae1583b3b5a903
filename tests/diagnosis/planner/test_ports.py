"""The port sweep: a closed port and the alternative to suggest instead."""

from __future__ import annotations

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.ports import port_list
from lab.diagnosis.requests import (
    Greeting,
    PortProbe,
    PortsResult,
)
from tests.diagnosis.planner.walks import (
    ADDRESS,
    DNS_OK,
    mail,
    walk,
)


def test_a_dropped_port_with_an_open_alternative_suggests_it() -> None:
    ports = PortsResult(
        ADDRESS,
        (
            PortProbe(25, "timeout", 3000.0, "timed out"),
            PortProbe(465, "open", 4.0, greeting=Greeting("tls", 220, "220 mail ESMTP")),
            PortProbe(587, "open", 3.0, greeting=Greeting("plain", 220, "220 mail", True)),
            PortProbe(2525, "refused", 1.0),
        ),
        3.0,
    )
    done = walk(mail(port=25, security="none", auth=None), [DNS_OK, ports])
    facts = done.facts["ports"]
    assert facts["state"] == "timeout"
    assert facts["others_open"] == [465, 587]
    assert facts["suggested"] == {
        "port": 587,
        "security": "starttls",
        "ms": 3.0,
        "label": "STARTTLS",
    }
    assert facts["implicit_port"] == 465
    assert done.step(Probe.PORTS).status is Status.FAIL
    assert "Port 587 answered in 3 ms" in done.step(Probe.PORTS).proves


def test_a_masked_or_plain_alternative_is_not_preferred() -> None:
    ports = PortsResult(
        ADDRESS,
        (
            PortProbe(25, "refused", 1.0),
            PortProbe(587, "open", 3.0, greeting=Greeting("plain", 220, "220 ******", False)),
            PortProbe(2525, "open", 3.0, greeting=Greeting("plain", 220, "220 mail", False)),
            PortProbe(465, "open", 3.0, greeting=Greeting("tls", 220, "220 mail")),
        ),
        3.0,
    )
    done = walk(mail(port=25, security="none", auth=None), [DNS_OK, ports])
    assert done.facts["ports"]["suggested"]["port"] == 465


def test_port_list() -> None:
    assert port_list(25) == (25, 465, 587, 2525)
    assert port_list(2526, (587,)) == (2526, 587)
