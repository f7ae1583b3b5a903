"""A mail server node run as several worker processes sharing its ports (SO_REUSEPORT).

One Python process is bound by its GIL to about one core, however many the
machine has. `serve_workers` forks `workers` copies of the node program;
each listens on the node's ports with SO_REUSEPORT, and the kernel spreads
new connections over them. The parent only supervises: it accepts nothing.

What stays per node, and how:

- the session caps (overall and per client) are counted in shared memory
  (`shared_gate.SharedSessionGate`), so they hold for the node as a whole;
- the mailboxes are one Maildir tree; file names carry the writer's pid
  (`store._UniqueNames`), so workers never collide;
- the event log is one file that every worker appends whole lines to
  (`lab.nodes.events`);
- state that cannot be shared cheaply keeps the node in one process
  (`single_process_reasons`): a relay's outbound queue, the connection rate
  limit and greylisting. A Message-ID already stored is recognised
  (`once.py`) by the worker that stored it and by any worker that opens the
  mailbox later; two workers that receive the same message at the same
  moment may each store it (a relay's redelivery after its own crash is the
  only sender of such twins).

Stopping: SIGTERM or SIGINT to the parent stops every worker (each closes
its listeners, drops its sessions and flushes its store) and the parent
waits for them all. A worker whose parent dies, even by SIGKILL, stops too:
the kernel signals it (PR_SET_PDEATHSIG) and it watches a pipe whose other
end only the parent holds. If one worker dies, the parent stops the others
and exits with an error: the node is restarted whole, never half-served.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from types import FrameType

from lab.net import DirectConnector
from lab.nodes.config import MailServerConfig
from lab.nodes.mailserver import server
from lab.nodes.mailserver.limits import raise_fd_limit
from lab.nodes.mailserver.shared_gate import SharedSessionGate

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
EXIT_WORKER_FAILED = 1


def single_process_reasons(config: MailServerConfig) -> list[str]:
    """Why this node must run in one process whatever its `workers` (empty: it need not)."""
    reasons = []
    if config.role == "relay":
        reasons.append("a relay's outbound queue")
    if config.rate_limit is not None:
        reasons.append("the connection rate limit")
    if config.greylist is not None:
        reasons.append("greylisting")
    return reasons


def worker_count(config: MailServerConfig, requested: int | None = None) -> int:
    """How many processes the node runs: `requested` (else its config), or 1 when it must."""
    wanted = requested if requested is not None else config.workers
    return 1 if single_process_reasons(config) else max(1, wanted)


def serve_workers(config: MailServerConfig, workers: int) -> int:
    """Run the node as `workers` forked processes until SIGTERM/SIGINT; the exit status.

    Call before any event loop or thread exists in this process (forking
    copies only the calling thread).
    """
    reserved = _reserve_ports(config)
    config = config.model_copy(
        update={
            "listeners": [
                listener.model_copy(update={"bind_port": reserved[index].getsockname()[1]})
                for index, listener in enumerate(config.listeners)
            ]
        }
    )
    limits = config.limits
    gate = SharedSessionGate(limits.connections, limits.per_client, raise_fd_limit())
    lifeline_read, lifeline_write = os.pipe()
    parent = os.getpid()
    children: set[int] = set()
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            os.close(lifeline_write)
            for sock in reserved:
                sock.close()
            _run_worker(config, gate, lifeline_read, parent, index)
        children.add(pid)
    os.close(lifeline_read)
    try:
        return _supervise(children)
    finally:
        os.close(lifeline_write)
        for sock in reserved:
            sock.close()


def _reserve_ports(config: MailServerConfig) -> list[socket.socket]:
    """One bound, not listening, SO_REUSEPORT socket per listener: a port 0 becomes a
    real port that every worker then binds too, and nothing else can take it meanwhile.
    A socket that does not listen is handed no connection."""
    family = socket.AF_INET6 if ":" in config.listen_host else socket.AF_INET
    reserved = []
    try:
        for listener in config.listeners:
            sock = socket.socket(family, socket.SOCK_STREAM)
            reserved.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((config.listen_host, listener.bind_port))
    except BaseException:
        for sock in reserved:
            sock.close()
        raise
    return reserved


def _supervise(children: set[int]) -> int:
    """Wait for every worker; on a signal or a worker's death, stop the rest. The status."""
    status = 0

    def stop_all(signum: int, frame: FrameType | None) -> None:
        nonlocal status
        status = status or 128 + signum
        _signal_all(children)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            children.discard(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            if code != 0 and status == 0:
                sys.stderr.write(f"lab.nodes: worker {pid} ended with status {code}\n")
                status = EXIT_WORKER_FAILED
                _signal_all(children)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # A stop asked for by a signal is a clean stop: 0, as a single process returns.
    return EXIT_WORKER_FAILED if status == EXIT_WORKER_FAILED else 0


def _signal_all(children: set[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _run_worker(
    config: MailServerConfig,
    gate: SharedSessionGate,
    lifeline: int,
    parent: int,
    index: int,
) -> None:
    """The body of one forked worker; never returns."""
    code = 0
    try:
        _die_with_parent(parent)
        asyncio.run(_serve(config, gate, lifeline))
    except BaseException as error:  # reported, then the worker exits
        if not isinstance(error, KeyboardInterrupt | SystemExit):
            sys.stderr.write(f"lab.nodes: worker {index} failed: {error!r}\n")
            code = EXIT_WORKER_FAILED
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    # The parent's atexit handlers and buffers are its own: leave without running them.
    os._exit(code)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies; exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        raise SystemExit(0)


async def _serve(config: MailServerConfig, gate: SharedSessionGate, lifeline: int) -> None:
    """Serve until SIGTERM/SIGINT or until the parent's end of the lifeline closes."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def parent_gone() -> None:
        loop.remove_reader(lifeline)
        stop.set()

    # Nothing is ever written: the pipe becomes readable (EOF) when the parent is gone.
    loop.add_reader(lifeline, parent_gone)
    running = await server.start(config, connector=DirectConnector(), gate=gate, reuse_port=True)
    try:
        await stop.wait()
    finally:
        await running.stop()
