"""Docker label keys, in one place: `down`, test teardown and the reaper select by label.

Everything the docker backend creates (networks, containers, images) carries
`smtplab.lab` and the owner labels made here, never something found by name.
User labels may not use the reserved `smtplab.` namespace, so that nothing a
caller adds can be mistaken for ownership information.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from pathlib import Path

import lab

PREFIX = "smtplab."
LAB = "smtplab.lab"  # the lab id; present on everything a lab owns
NODE = "smtplab.node"  # the node a container runs
NETWORK = "smtplab.network"  # the scenario network a docker network stands for
SCENARIO = "smtplab.scenario"  # the scenario id
SESSION = "smtplab.session"  # one id per Python process that created things
VERSION = "smtplab.version"  # smtp-lab version of the creator
PID = "smtplab.pid"  # "<pid>:<start ticks>" of the owning process; absent on detached labs
HOST = "smtplab.host"  # hostname of the owning process (pids mean nothing elsewhere)
USER = "smtplab.user"  # login name of whoever started the lab (shared engines)
IMAGE = "smtplab.image"  # on images: "base" or "node"
BASE = "smtplab.base"  # on node images: which base they were built from

RESERVED = frozenset({LAB, NODE, NETWORK, SCENARIO, SESSION, VERSION, PID, HOST, USER, IMAGE, BASE})

# A fresh id per process: the reaper and the atexit hook tell this run's objects apart.
SESSION_ID = uuid.uuid4().hex


def process_token(pid: int | None = None) -> str | None:
    """`"<pid>:<start ticks>"` of a process, or None when it does not exist.

    The start time (field 22 of /proc/<pid>/stat) guards against a recycled pid
    being taken for the owner of an old lab.
    """
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return f"{pid}:{fields[19]}"


def owner_alive(token: str) -> bool:
    """Whether the process named by a `smtplab.pid` value still runs on this host."""
    pid_text, _, _ = token.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    return process_token(pid) == token


def create_labels(
    lab_id: str,
    *,
    node: str | None = None,
    network: str | None = None,
    scenario: str | None = None,
    detached: bool = False,
    **extra: str,
) -> dict[str, str]:
    """The labels of one object owned by lab `lab_id`.

    Args:
        lab_id: value of `smtplab.lab`.
        node, network, scenario: values of the reserved keys of the same names.
        detached: leave out the owning process, so that `reap` keeps the lab
            after this process exits (`smtplab up` in the background).
        extra: further labels; keys must not start with `smtplab.`.

    Raises:
        ValueError: a key of `extra` is in the reserved namespace.
    """
    for key in extra:
        if key.startswith(PREFIX):
            raise ValueError(f"label {key!r} is in the reserved {PREFIX}* namespace")
    labels = {
        LAB: lab_id,
        SESSION: SESSION_ID,
        VERSION: lab.__version__,
        HOST: socket.gethostname(),
        USER: getpass.getuser(),
    }
    token = process_token()
    if not detached and token is not None:
        labels[PID] = token
    for key, value in ((NODE, node), (NETWORK, network), (SCENARIO, scenario)):
        if value is not None:
            labels[key] = value
    labels.update(extra)
    return labels


def selector(key: str, value: str | None = None) -> dict[str, list[str]]:
    """A docker `filters` argument matching objects labelled `key` (=`value`)."""
    return {"label": [key if value is None else f"{key}={value}"]}
