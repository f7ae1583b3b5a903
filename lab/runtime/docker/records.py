"""Docker labs as the engine records them, found by label: listing, describing, logs,
removal and reaping (`smtplab labs`, `down`, `logs`, `reap`).

Everything a lab creates carries the labels of `lab.runtime.labels`; what is
selected here is selected by label, never by name, so that a lab left by a
crashed run (or one that `up` created only half of) is found just the same. A
detached lab (`smtplab up`) carries no owner pid: it runs until `smtplab down`,
and `reap` leaves it alone.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.runtime import labels
from lab.runtime.docker.engine import in_parallel
from lab.runtime.docker.files import DATA_ROOT, lab_state_dir


def remove_lab(client: Any, lab_id: str, host_dir: Path | None = None) -> None:
    """Remove every container and network labelled `smtplab.lab=lab_id`, then its host dir.

    Found by label, not by what this process remembers, so that a lab left by a
    crashed run (or one that `up` created only half of) goes just the same.
    """
    import docker.errors

    api = client.api
    wanted = labels.selector(labels.LAB, lab_id)
    containers = api.containers(all=True, filters=wanted)

    def remove_container(container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(container_id, force=True, v=True)

    # Where the containers really keep their files (the creator's SMTPLAB_STATE may differ
    # from ours); read before they go.
    host_dir = host_dir or mounted_host_dir(containers, lab_id) or lab_state_dir(lab_id)
    in_parallel([functools.partial(remove_container, c["Id"]) for c in containers])
    stuck = [
        network["Name"]
        for network in api.networks(filters=wanted)
        if not remove_network(api, network["Id"])
    ]
    if host_dir.exists():
        shutil.rmtree(host_dir, ignore_errors=True)
    if stuck:
        raise LabError(
            f"lab {lab_id}: the engine still holds an endpoint in {', '.join(stuck)} after its "
            "containers went (a stale endpoint); restart the engine, then `smtplab down --all`"
        )


# The engine drops a removed container's endpoint a moment after the container: when several
# labs go down at once, a network can still have "active endpoints" for a while.
STALE_ENDPOINT_WAITS = (0.2, 0.5, 1.0, 1.5, 2.0)


def remove_network(
    api: Any, network_id: str, waits: Iterable[float] = STALE_ENDPOINT_WAITS
) -> bool:
    """Remove a network, waiting out endpoints the engine has not dropped yet; False when
    it still has one after the waits (any other engine error is raised)."""
    import docker.errors

    for wait in (*waits, None):
        try:
            api.remove_network(network_id)
            return True
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError as error:
            if "active endpoints" not in str(error):
                raise
            if wait is None:
                return False
            time.sleep(wait)
    return False


def mounted_host_dir(containers: Iterable[Mapping[str, Any]], lab_id: str) -> Path | None:
    """The host directory bind-mounted at `DATA_ROOT` in a lab's containers (as listed by
    the engine), or None. Only a directory named after the lab counts: a label alone must
    never lead to deleting some other folder."""
    for container in containers:
        for mount in container.get("Mounts") or []:
            source = mount.get("Source")
            if mount.get("Destination") == str(DATA_ROOT) and source:
                path = Path(source)
                if path.name == lab_id:
                    return path
    return None


def list_labs(client: Any) -> dict[str, dict[str, str]]:
    """Lab id -> the labels of one of its objects, for every labelled container and network."""
    found: dict[str, dict[str, str]] = {}
    selector = labels.selector(labels.LAB)
    for container in client.api.containers(all=True, filters=selector):
        found.setdefault(container["Labels"][labels.LAB], container["Labels"])
    for network in client.api.networks(filters=selector):
        found.setdefault(network["Labels"][labels.LAB], network["Labels"])
    return found


@dataclass(frozen=True)
class LabInfo:
    """A docker lab as the engine shows it (found by label)."""

    id: str
    scenario: str
    nodes: dict[str, str]  # node -> container state ("running", "exited", ...)
    owner: str | None  # "<pid>:<start>" of the owning process; None for detached labs
    host: str
    user: str  # who started it ("?" for labs of versions before the label)
    created: float  # seconds since the epoch, of its oldest container
    host_dir: Path | None

    @property
    def detached(self) -> bool:
        """Started by `smtplab up`: it runs until `smtplab down`."""
        return self.owner is None

    @property
    def owner_alive(self) -> bool | None:
        """Whether the owning process still runs (None: detached, or another host's)."""
        if self.owner is None or self.host != socket.gethostname():
            return None
        return labels.owner_alive(self.owner)

    @property
    def owner_text(self) -> str:
        """Who owns the lab, for `labs` and `down --all`."""
        if self.detached:
            return f"detached (smtplab up, user {self.user})"
        pid = self.owner.partition(":")[0] if self.owner else "?"
        if self.owner_alive is False:
            return f"dead (was pid {pid}, user {self.user}; smtplab reap removes it)"
        where = "" if self.owner_alive else f" on {self.host}"
        return f"pid {pid}{where}, user {self.user}"


def describe_labs(client: Any) -> list[LabInfo]:
    """Every labelled lab on the engine, oldest first."""
    selector = labels.selector(labels.LAB)
    containers: dict[str, list[dict[str, Any]]] = {}
    for container in client.api.containers(all=True, filters=selector):
        containers.setdefault(container["Labels"][labels.LAB], []).append(container)
    infos = []
    for lab_id, object_labels in list_labs(client).items():
        mine = containers.get(lab_id, [])
        infos.append(
            LabInfo(
                id=lab_id,
                scenario=object_labels.get(labels.SCENARIO, "?"),
                nodes={
                    c["Labels"].get(labels.NODE, c["Id"][:12]): str(c.get("State", "?"))
                    for c in mine
                },
                owner=object_labels.get(labels.PID),
                host=object_labels.get(labels.HOST, ""),
                user=object_labels.get(labels.USER, "?"),
                created=min((float(c.get("Created", 0)) for c in mine), default=0.0),
                host_dir=mounted_host_dir(mine, lab_id),
            )
        )
    return sorted(infos, key=lambda info: (info.created, info.id))


def find_lab(client: Any, lab_id: str) -> LabInfo | None:
    """The lab called `lab_id`, or None."""
    return next((info for info in describe_labs(client) if info.id == lab_id), None)


def container_logs(client: Any, lab_id: str, node: str, tail: int | str = "all") -> str:
    """What `node`'s container of lab `lab_id` wrote to stdout and stderr.

    Raises:
        NoSuchLab: no container of that lab runs that node.
    """
    from lab.errors import NoSuchLab

    found = client.api.containers(
        all=True, filters={"label": [f"{labels.LAB}={lab_id}", f"{labels.NODE}={node}"]}
    )
    if not found:
        raise NoSuchLab(f"lab {lab_id} has no node {node!r}")
    output: bytes = client.api.logs(found[0]["Id"], tail=tail)
    return output.decode(errors="replace")


def orphaned(object_labels: Mapping[str, str]) -> bool:
    """Whether the process that created an object is gone (only knowable on its own host)."""
    owner = object_labels.get(labels.PID)
    if owner is None or object_labels.get(labels.HOST) != socket.gethostname():
        return False
    if object_labels.get(labels.SESSION) == labels.SESSION_ID:
        return False
    return not labels.owner_alive(owner)


def reap(client: Any, *, all_labs: bool = False) -> list[str]:
    """Remove labs whose owning process is gone (all labs with `all_labs`); their ids."""
    removed = []
    for lab_id, object_labels in sorted(list_labs(client).items()):
        if all_labs or orphaned(object_labels):
            remove_lab(client, lab_id)
            removed.append(lab_id)
    return removed
