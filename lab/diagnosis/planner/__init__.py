"""The diagnosis planner: every decision of a diagnosis, and no I/O.

Like dnspython's `_Resolution`, the planner says which probe comes next
(`Planner.next_request`) and turns what the probe saw into `Step`s
(`Planner.record`); the runners in `lab.diagnosis.probes` own the sockets and
only carry requests out. So the path an expert walks and the words that say
what each result proves are tested with no network at all.

The layout follows that path. `sequence` orders the stages and holds the
`Planner`; one module per stage says what it asks, what it concludes and which
facts it sets: `resolve` (DNS), `ports`, `greeting` (banner and EHLO), `tls`,
`auth`, `envelope` (MAIL, RCPT), `delivery` (DATA and the message's fate), `audit`
(an open-relay check from outside, when the session relayed without a login),
`recipient` (VRFY and RCPT at the server that refused an unknown mailbox).
`facts` collects the facts (one nested dict of plain values per stage, plus the
decisive `problem` and the `outcome`) and the steps; the fault catalog matches
these facts and never sees a scenario. `asking` is how a stage asks,
`tls_facts` what TLS results mean; `lab.addresses` reads names and addresses.
"""

from __future__ import annotations

from lab.addresses import domain_of, is_ip_literal
from lab.diagnosis.planner.envelope import suggest_addresses
from lab.diagnosis.planner.facts import ORDER, SESSION_PROBES, human_size, settings_facts
from lab.diagnosis.planner.greeting import SLOW_BANNER_MS
from lab.diagnosis.planner.ports import (
    ALTERNATIVE_PORTS,
    IMPLICIT_TLS_PORTS,
    PORT_PREFERENCE,
    port_list,
)
from lab.diagnosis.planner.sequence import Planner
from lab.diagnosis.planner.tls_facts import classify_tls_error

__all__ = [
    "ALTERNATIVE_PORTS",
    "IMPLICIT_TLS_PORTS",
    "ORDER",
    "PORT_PREFERENCE",
    "SESSION_PROBES",
    "SLOW_BANNER_MS",
    "Planner",
    "classify_tls_error",
    "domain_of",
    "human_size",
    "is_ip_literal",
    "port_list",
    "settings_facts",
    "suggest_addresses",
]
