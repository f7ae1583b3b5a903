"""Where mail for a recipient domain goes, as the DNS probe reads the records a target gives.

Targets hand MX records over as text: the lab's resolver drops a null MX (`[]`), a
container's query returns it as `0 .`; both are the RFC 7505 null MX. The end-to-end case
(a real DNS node and Postfix) is `null-mx` in `tests/runtime/test_postfix_parity.py`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from lab.diagnosis.probes.context import ProbeContext
from lab.diagnosis.probes.lookups import _lookup_domain


class RecordsTarget:
    """A target whose MX answer for every name is `records` and whose A answer is one address."""

    def __init__(self, records: list[str]) -> None:
        self.records = records

    async def resolve(self, name: str, rdtype: str = "A") -> list[str]:
        return self.records if rdtype == "MX" else ["192.0.2.80"]


def context(records: list[str]) -> ProbeContext:
    return cast("ProbeContext", SimpleNamespace(target=RecordsTarget(records)))


@pytest.mark.parametrize(
    ("records", "status", "hosts"),
    [
        ([], "null-mx", ()),
        (["0 ."], "null-mx", ()),
        (["10 mx.example.org.", "0 ."], "ok", ("mx.example.org",)),  # RFC 7505 §3: ignored
        (["10 MX.Example.org."], "ok", ("mx.example.org",)),
        (["0 example.org"], "no-mx", ()),  # the domain is its own exchanger
    ],
)
async def test_null_mx_whatever_form_the_target_gives(
    records: list[str], status: str, hosts: tuple[str, ...]
) -> None:
    lookup = await _lookup_domain(context(records), "example.org")
    assert (lookup.status, lookup.mx) == (status, hosts)
