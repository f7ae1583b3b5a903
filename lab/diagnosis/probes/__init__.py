"""Probe runners: the thin I/O loop around the planner's requests.

`ProbeRunner.run(request)` carries out one request of `lab.diagnosis.planner`
and returns what it saw as a plain result; it decides nothing. The probes own
the sockets: the main SMTP session (`session`, which behaves exactly like the
customer's mail program, with its TLS verification and its login), the DNS
lookups (`lookups`), the port sweep (`ports`, every port at once, so a whole
diagnosis costs about one connect timeout plus the conversation itself), the
short side connections that explain a failure (`side`) and the message's fate
after the hand-off (`delivery`). `context` holds what they all work with,
`failures` how their errors become the planner's `Failure`.
"""

from __future__ import annotations

from lab.diagnosis.probes.context import ProbeContext, insecure_context, permissive_context
from lab.diagnosis.probes.delivery import delivery_from
from lab.diagnosis.probes.failures import failure_of
from lab.diagnosis.probes.ports import MIN_GREETING_BUDGET
from lab.diagnosis.probes.runner import ProbeRunner
from lab.diagnosis.probes.side import SIDE_TIMEOUT

__all__ = [
    "MIN_GREETING_BUDGET",
    "SIDE_TIMEOUT",
    "ProbeContext",
    "ProbeRunner",
    "delivery_from",
    "failure_of",
    "insecure_context",
    "permissive_context",
]
