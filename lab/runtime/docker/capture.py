"""Packet capture on a docker lab's router: tcpdump in the router container, on its inside
interface, writing a pcap into the node's bind-mounted data dir where the host reads it.

tcpdump runs as root (`-Z root`): Debian's build would otherwise switch to a `tcpdump`
user that may not write into the bind mount. `--immediate-mode` hands each packet over at
once (libpcap otherwise holds them in its ring for up to a second, and a SIGINT then loses
a short SMTP session whole) and `-U` writes it, so the file is complete when tcpdump is
stopped; the file header is written at start, which is the readiness signal (no sleeps)."""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.runtime.docker.files import DATA_ROOT
from lab.wire.capture import Capture
from lab.wire.flows import flows_from_segments
from lab.wire.pcap import PcapError, read_segments

if TYPE_CHECKING:
    from lab.runtime.docker.lab import DockerLab

_PCAP_HEADER = 24
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_POLL = 0.05


def interface_with(address: IPv4Address, ip_addr_output: str) -> str | None:
    """The interface holding `address`, from `ip -o -4 addr show` output."""
    for line in ip_addr_output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet" and fields[3].split("/")[0] == str(address):
            return fields[1].split("@")[0]
    return None


@asynccontextmanager
async def tcpdump(lab: DockerLab, router: str) -> AsyncIterator[Capture]:
    """Capture TCP on `router`'s inside interface while the block runs; the flows and the
    pcap bytes are in the yielded `Capture` once the block ends (also when it fails).

    Raises:
        LabError: tcpdump did not start or its file could not be read.
    """
    spec = lab.topology.scenario.nodes[router]
    inside = lab.topology.nodes[router].addresses[spec.inside]  # type: ignore[union-attr]
    code, output = await asyncio.to_thread(lab.exec, router, ["ip", "-o", "-4", "addr", "show"])
    interface = interface_with(inside, output) if code == 0 else None
    if interface is None:
        raise LabError(f"no interface holds {inside} in {router}: {output.strip()}")
    name = f"capture-{time.time_ns()}"
    host_file = lab.data_dir(router) / f"{name}.pcap"
    inner_file = DATA_ROOT / router / f"{name}.pcap"
    pid_file = DATA_ROOT / router / f"{name}.pid"
    script = (
        f"echo $$ > {shlex.quote(str(pid_file))}; exec tcpdump -Z root -i {interface} -n -U "
        f"--immediate-mode -s 262 -w {shlex.quote(str(inner_file))} tcp"
    )
    await asyncio.to_thread(lab.exec_detached, router, ["sh", "-c", script])
    capture = Capture(router, interface)
    try:
        await _wait_for(lambda: _size(host_file) >= _PCAP_HEADER, _START_TIMEOUT,
                        f"tcpdump did not start in {router}")  # fmt: skip
        yield capture
    finally:
        stop = f"kill -INT $(cat {shlex.quote(str(pid_file))})"
        await asyncio.to_thread(lab.exec, router, ["sh", "-c", stop])
        gone = f"! kill -0 $(cat {shlex.quote(str(pid_file))}) 2>/dev/null"
        await _wait_for(
            lambda: lab.exec(router, ["sh", "-c", gone])[0] == 0,
            _STOP_TIMEOUT,
            f"tcpdump did not stop in {router}",
        )
        data = host_file.read_bytes() if host_file.exists() else b""
        capture.pcap = data
        try:
            capture.flows = flows_from_segments(read_segments(data))
        except PcapError as error:
            raise LabError(f"the capture on {router} could not be read: {error}") from error


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def _wait_for(ready: Callable[[], bool], timeout: float, failure: str) -> None:
    """Poll `ready` (run in a thread: it may call docker) until true, or fail at `timeout`."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(ready):
        if time.monotonic() > deadline:
            raise LabError(failure)
        await asyncio.sleep(_POLL)
