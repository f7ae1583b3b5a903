"""The failing hop: which leg of the mail's route a fault lies on, and who must act on it.

A message crosses several legs: the mail program to its submission server, then
relay to relay (a smart host, a connector's partner relay, a backup MX) up to the
recipient's MX, all over network paths with routers in between. A step name alone
("delivery") does not say which of these failed; the relays' route decisions do.
`delivery_hop` reads them from the followed message (the planner's `delivery.hop`
fact), `failing_hop` names the hop for the verdict, and `who_acts` says who must
act when no mail-program setting fixes the fault. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lab.addresses import domain_of
from lab.diagnosis.events import FailingHop, Probe
from lab.diagnosis.requests import DeliveryResult, RouteTaken
from lab.scenario.model import HopKind, MailSettings

_BY_METHOD = {
    "connector": HopKind.CONNECTOR,
    "smarthost": HopKind.SMART_HOST,
    "mx": HopKind.RECIPIENT_MX,
    "implicit-mx": HopKind.RECIPIENT_MX,
}
_MX_METHODS = frozenset({"mx", "implicit-mx"})
# Who runs each later leg, for faults the customer's mail program cannot fix.
_ACTS = {
    HopKind.SUBMISSION: "the mail provider that runs {where}",
    HopKind.SMART_HOST: (
        "the mail provider or relay admin: the relay must be allowed to use the smart host "
        "{where} (a login, or its address on the smart host's list)"
    ),
    HopKind.CONNECTOR: (
        "the customer's IT, who run the connector for {pattern} and its partner relay {where}"
    ),
    HopKind.BACKUP_MX: "the recipient's admin, who runs the backup MX {where}",
    HopKind.RECIPIENT_MX: "the recipient's admin, who runs {where}",
    HopKind.PATH: "the ISP, or whoever runs {where}",
}


def delivery_hop(delivery: DeliveryResult) -> dict[str, Any] | None:
    """The leg where the followed message failed or waits, as facts; None if it arrived.

    The furthest relay that made a route decision for the failing recipient's domain
    is the one that could not go on: its method names the hop (connector, smart host,
    MX). A relay that itself routes by MX after an earlier relay did too was reached
    as an MX of the domain that is not the final one: a backup MX.
    """
    recipient = _failing_recipient(delivery)
    if recipient is None:
        return None
    domain = domain_of(recipient)
    routes = [route for route in delivery.routes if route.domain == domain]
    if not routes:
        return None
    last = routes[-1]
    kind = _BY_METHOD.get(last.method, HopKind.RECIPIENT_MX)
    earlier_mx = any(r.node != last.node and r.method in _MX_METHODS for r in routes[:-1])
    if kind is HopKind.RECIPIENT_MX and earlier_mx:
        kind = HopKind.BACKUP_MX
        where = last.node or domain
    else:
        where = _where(last)
    return {
        "kind": str(kind),
        "node": last.node,
        "method": last.method,
        "pattern": last.pattern,
        "where": where,
        "recipient": recipient,
        "failure": last.failure,
    }


def _failing_recipient(delivery: DeliveryResult) -> str | None:
    for recipient in delivery.recipients:
        if recipient.fate == "bounced":
            return recipient.address
    if delivery.state == "delivered":
        return None
    for deferral in delivery.deferrals:
        if deferral.recipient:
            return deferral.recipient
    pending = [r.address for r in delivery.recipients if r.fate != "delivered"]
    return pending[0] if pending else None


def _where(route: RouteTaken) -> str:
    """Where the relay tried last ("host[address]:port"), else its configured next hop."""
    if route.tried:
        return route.tried[-1]
    if route.hops:
        return route.hops[0]
    return f"{route.domain} (no mail host found)" if route.failure else route.domain


def failing_hop(
    failed_probe: Probe | None,
    facts: dict[str, Any],
    settings: MailSettings,
    *,
    on_path: bool,
    node: str | None,
    middlebox: str | None,
) -> FailingHop | None:
    """The hop the verdict names; None when nothing failed.

    Args:
        failed_probe: the step that failed.
        facts: the diagnosis facts (`delivery.hop`, the server's address).
        settings: the mail program's settings (the submission server and port).
        on_path: the matched fault lies in the network, not in a server (catalog `hop: path`).
        node: the lab node the failed step points at.
        middlebox: the router between the mail program and its server, when known.
    """
    if failed_probe is None:
        return None
    delivery = facts.get("delivery") or {}
    if failed_probe is Probe.DELIVERY:
        hop = delivery.get("hop")
        if isinstance(hop, dict):
            return FailingHop(
                HopKind(hop["kind"]), hop["where"], hop.get("node"), hop.get("pattern")
            )
        domains = ", ".join(dict.fromkeys(domain_of(address) for address in settings.to))
        return FailingHop(HopKind.RECIPIENT_MX, domains)
    if on_path:
        router = middlebox or node
        return FailingHop(HopKind.PATH, router or "the network path", router)
    address = (facts.get("ports") or {}).get("address") or (facts.get("resolve") or {}).get(
        "address"
    )
    where = f"{settings.server}[{address}]:{settings.port}" if address else settings.server
    return FailingHop(_direct_kind(settings.server, facts), where, node)


def _direct_kind(server: str, facts: dict[str, Any]) -> HopKind:
    """Submission, unless the mail program talks to an MX of a recipient domain itself
    (software that delivers directly): then that MX is the hop, a backup one if it is not
    listed first (the lookup orders exchangers by preference)."""
    name = server.strip("[]").lower().rstrip(".")
    for domain in (facts.get("resolve") or {}).get("recipients") or []:
        hosts = [str(host).lower().rstrip(".") for host in domain.get("mx") or []]
        if name in hosts:
            return HopKind.RECIPIENT_MX if hosts.index(name) == 0 else HopKind.BACKUP_MX
    return HopKind.SUBMISSION


def who_acts(hop: FailingHop | None, acts: str | None, fixed_by_settings: bool) -> str | None:
    """Who must act when no mail-program setting fixes the fault: the catalog entry's own
    words, else the party that runs the later hop (or the path); None: the customer."""
    if hop is None or fixed_by_settings:
        return None
    if acts:
        return acts
    if hop.kind is HopKind.SUBMISSION:
        return None
    return _ACTS[hop.kind].format(where=hop.where, pattern=hop.pattern or "its address space")


def route_summary(routes: Sequence[RouteTaken]) -> list[dict[str, Any]]:
    """The relays' route decisions as plain facts, oldest first."""
    return [
        {
            "node": route.node,
            "domain": route.domain,
            "method": route.method,
            "pattern": route.pattern,
            "hops": list(route.hops),
            "tried": list(route.tried),
            "failure": route.failure,
        }
        for route in routes
    ]
