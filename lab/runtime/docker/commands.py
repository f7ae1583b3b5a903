"""What each node's container runs: its role's program behind an init script that sets routes.

Behind a router, a node's default route points at the router's inside
address; every other node loses its default route; a switched-off host drops
all it receives. The init script does this with `NET_ADMIN`, then drops that
capability before the node's program starts, so no lab node has a route to
anything but lab subnets (see `with_lab_route`).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

from lab.topology import NodePlan, Topology

IDLE_COMMAND = ["sleep", "infinity"]

CommandFactory = Callable[[NodePlan, str], list[str]]


def node_command(node: NodePlan, config_path: str) -> list[str]:
    """What a node's container runs: its role's program; the client idles (`send` execs it)."""
    if node.kind == "client":
        return list(IDLE_COMMAND)
    return ["python3", "-m", "lab.nodes", node.kind, config_path]


# Run as `sh -c INIT smtplab-init <gateway or ""> <"off" or ""> <marker or ""> <hold or "">
# <program...>`. A failure exits with 97 rather than run the program with a route out of
# the lab.
INIT_SCRIPT = """\
gateway="$1"; off="$2"; marker="$3"; hold="$4"; shift 4
if [ -n "$gateway" ]; then
    ip route replace default via "$gateway" || exit 97
else
    ip route del default 2>/dev/null
    if ip route show default | grep -q .; then exit 97; fi
fi
if [ -n "$off" ]; then
    iptables -w -P INPUT DROP || exit 97
    case "$off" in
        back-after=*) (until [ -e /tmp/smtplab-lab-up ]; do sleep 0.1; done
            sleep "${off#back-after=}" && iptables -w -P INPUT ACCEPT) & ;;
    esac
fi
echo "smtplab-init: routes set"
if [ -n "$marker" ]; then : > "$marker" || exit 97; fi
if [ -n "$hold" ]; then until [ -e "$hold" ]; do sleep 0.02; done; fi
exec setpriv --bounding-set=-net_admin -- "$@"
"""
# Created in a container by the runtime once the whole lab is up: a server that comes back
# counts its downtime from then.
LAB_UP_FILE = "/tmp/smtplab-lab-up"
# What the init script prints once routes (and a switched-off host's firewall) are in place.
INIT_DONE = "smtplab-init: routes set"


def with_lab_route(
    command: list[str],
    gateway: IPv4Address | None,
    *,
    switched_off: bool = False,
    back_after: float | None = None,
    marker: str = "",
    hold: str = "",
) -> list[str]:
    """`command`, run after fixing the default route and dropping `NET_ADMIN`.

    Behind a router the default route points at the router's inside address;
    elsewhere it is deleted (docker gives containers on internal networks a
    default route to the host bridge, which then drops what they send: better
    none at all). A switched-off host drops every packet sent to it, so a
    client waits out its connect timeout, as `path_verdict` says. The container
    needs `NET_ADMIN` for this; `setpriv` removes it from the bounding set
    before the program starts, so the program cannot route around the ISP
    (`docker exec` still has it, for inspection). A host that comes back
    (`back_after` seconds) runs its program behind the same firewall, which a
    background shell, forked before `NET_ADMIN` is dropped, opens that long after
    the runtime created `LAB_UP_FILE` (the whole lab is up).

    Once the routes are set the script creates the file `marker` (a host-side
    file readiness can watch without asking the engine), then, with `hold`, waits
    until the file `hold` exists before it starts the program: a node behind a
    router starts with the router, and its program once the runtime saw the
    router's rules in place.
    """
    off = "off" if switched_off else ""
    if back_after is not None:
        off = f"back-after={back_after:.3f}"
    return [
        "sh", "-c", INIT_SCRIPT, "smtplab-init", str(gateway or ""), off, marker, hold, *command,
    ]  # fmt: skip


def customer_gateways(topology: Topology) -> dict[str, IPv4Address]:
    """Node name -> its router's inside address, for every node behind a router."""
    gateways: dict[str, IPv4Address] = {}
    for router, spec in topology.routers():
        for node in topology.nodes.values():
            if node.kind != "router" and spec.inside in node.addresses:
                gateways[node.name] = router.addresses[spec.inside]
    return gateways
