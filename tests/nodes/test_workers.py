"""A mail server node as several worker processes sharing its port (SO_REUSEPORT), on real
sockets: every acknowledged message lands once, the session caps hold for the node as a
whole, a stop or the parent's death leaves no worker behind, and nodes whose policy keeps
per-process state run one process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lab.nodes.config import MailServerConfig, RateLimitConfig
from lab.nodes.events import EventLog, read_events
from lab.nodes.mailserver.once import header_message_id
from lab.nodes.mailserver.shared_gate import SharedSessionGate
from lab.nodes.mailserver.store import MailStore
from lab.nodes.mailserver.workers import single_process_reasons, worker_count
from lab.replies import S421_TOO_MANY, S421_TOO_MANY_FROM_CLIENT
from lab.scenario.model import MailboxState
from tests.nodes.conftest import HOSTNAME, LOCALHOST, listener, proxy_header

RECIPIENT = "alice@example.com"
WAIT = 30.0  # bound on every wait below; none is a speed assertion


def mx_config(data_dir: Path, **overrides: Any) -> MailServerConfig:
    fields: dict[str, Any] = {
        "name": "mx",
        "data_dir": data_dir,
        "listen_host": LOCALHOST,
        "role": "mx",
        "hostname": HOSTNAME,
        "listeners": [listener(25)],
        "auth_mechanisms": [],
        "domains": ["example.com"],
        "mailboxes": {RECIPIENT: MailboxState.ACTIVE},
        **overrides,
    }
    return MailServerConfig(**fields)


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT:.0f} s: {what}")
        time.sleep(0.05)


class Node:
    """`python -m lab.nodes mx config.json --workers N` in its own process."""

    def __init__(
        self, tmp_path: Path, workers: int, expect: int | None = None, **overrides: Any
    ) -> None:
        self.data_dir = tmp_path / "mx"
        config = mx_config(self.data_dir, **overrides)
        config_file = tmp_path / "mx.json"
        config_file.write_text(config.model_dump_json())
        command = [sys.executable, "-m", "lab.nodes", "mx", str(config_file)]
        self.process = subprocess.Popen(
            [*command, "--workers", str(workers)], stderr=subprocess.PIPE
        )
        expect = workers if expect is None else expect
        wait_until(lambda: len(self.started()) == expect, f"{expect} workers listening")
        self.workers = [int(event["pid"]) for event in self.started()]
        self.port = int(self.started()[0]["ports"]["25"])
        self.stderr = ""

    def started(self) -> list[dict[str, Any]]:
        if self.process.poll() is not None:
            raise AssertionError(f"the node ended: {self.process.stderr.read()!r}")  # type: ignore[union-attr]
        return [e for e in read_events(self.data_dir) if e["event"] == "started"]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(WAIT)
        finally:
            assert self.process.stderr is not None
            if not self.process.stderr.closed:
                self.stderr = self.process.stderr.read().decode(errors="replace")
                self.process.stderr.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Any]:
    started: list[Node] = []

    def start(workers: int, expect: int | None = None, **overrides: Any) -> Node:
        started.append(Node(tmp_path, workers, expect, **overrides))
        return started[-1]

    yield start
    for each in started:
        each.stop()
        for pid in each.workers:  # never leave one behind, whatever the test did
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def message(number: int) -> bytes:
    return (
        f"From: sender@remote.example\r\nTo: {RECIPIENT}\r\nSubject: {number}\r\n"
        f"Message-ID: <w{number}@remote.example>\r\n\r\nBody {number}.\r\n"
    ).encode()


def send(port: int, number: int) -> bool:
    """One message on its own connection; whether the server acknowledged it."""
    try:
        with smtplib.SMTP(LOCALHOST, port, timeout=WAIT) as client:
            client.sendmail("sender@remote.example", [RECIPIENT], message(number))
    except (smtplib.SMTPException, OSError):
        return False
    return True


def held_session(port: int, source: str | None = None) -> tuple[socket.socket, bytes]:
    """A connection (behind a PROXY header from `source`) and the first line it was told."""
    sock = socket.create_connection((LOCALHOST, port), timeout=WAIT)
    if source is not None:
        sock.sendall(proxy_header(source, 25))
    return sock, sock.makefile("rb").readline()


class TestWorkers:
    def test_workers_accept_side_by_side_and_every_acknowledged_message_lands_once(
        self, node: Any
    ) -> None:
        mx = node(2)
        assert len(set(mx.workers)) == 2
        with ThreadPoolExecutor(16) as pool:
            acknowledged = list(pool.map(lambda n: send(mx.port, n), range(200)))
        assert all(acknowledged)
        stored = MailStore(mx.data_dir / "mailboxes").messages(RECIPIENT)
        ids = Counter(header_message_id(m.data) for m in stored)
        assert ids == Counter(f"<w{n}@remote.example>" for n in range(200))
        # Both workers stored some: each Maildir name ends with its writer's pid.
        writers = {m.id.rsplit(".P", 1)[1] for m in stored}
        assert writers == {str(pid) for pid in mx.workers}
        assert mx.stop() == 0
        lines = (mx.data_dir / "events.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in lines]  # no line split or interleaved
        assert sum(e["event"] == "stored" for e in events) == 200
        assert sum(e["event"] == "stopped" for e in events) == 2
        assert not any(alive(pid) for pid in mx.workers)

    def test_the_connection_cap_holds_for_the_node_not_per_worker(self, node: Any) -> None:
        mx = node(2, limits={"connections": 3})
        held = [held_session(mx.port) for _ in range(3)]
        assert all(line.startswith(b"220 ") for _, line in held)
        # Connections spread over both workers by their ports: each is refused.
        refused = [held_session(mx.port) for _ in range(12)]
        full = f"{S421_TOO_MANY(hostname=HOSTNAME)}\r\n".encode()
        assert [line for _, line in refused] == [full] * 12
        for sock, _ in held + refused:
            sock.close()

    def test_the_per_client_cap_holds_for_the_node_not_per_worker(self, node: Any) -> None:
        mx = node(2, proxy_protocol=True, limits={"per_client": 2})
        client = "10.213.2.77"
        held = [held_session(mx.port, client) for _ in range(2)]
        assert all(line.startswith(b"220 ") for _, line in held)
        refused = [held_session(mx.port, client) for _ in range(12)]
        reply = S421_TOO_MANY_FROM_CLIENT(hostname=HOSTNAME, client=client)
        assert [line for _, line in refused] == [f"{reply}\r\n".encode()] * 12
        other, line = held_session(mx.port, "10.213.2.78")
        assert line.startswith(b"220 ")
        for sock, _ in [*held, *refused, (other, line)]:
            sock.close()

    def test_a_killed_parent_leaves_no_worker(self, node: Any) -> None:
        mx = node(2)
        assert all(alive(pid) for pid in mx.workers)
        mx.process.send_signal(signal.SIGKILL)
        mx.process.wait(WAIT)
        wait_until(lambda: not any(alive(pid) for pid in mx.workers), "workers gone")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((LOCALHOST, mx.port), timeout=WAIT).close()

    def test_a_worker_that_dies_stops_the_node(self, node: Any) -> None:
        mx = node(2)
        os.kill(mx.workers[0], signal.SIGKILL)
        assert mx.process.wait(WAIT) == 1
        wait_until(lambda: not alive(mx.workers[1]), "the other worker gone")


class TestWhichNodesKeepOneProcess:
    def test_shared_policies_keep_one_process(self, tmp_path: Path) -> None:
        plain = mx_config(tmp_path, workers=4)
        assert single_process_reasons(plain) == []
        assert worker_count(plain) == 4
        assert worker_count(plain, 2) == 2
        limited = mx_config(tmp_path, workers=4, rate_limit=RateLimitConfig(connections=5, per=60))
        assert single_process_reasons(limited) == ["the connection rate limit"]
        assert worker_count(limited) == 1
        relay = mx_config(tmp_path, role="relay", workers=4)
        assert worker_count(relay, 8) == 1

    def test_a_rate_limited_node_runs_one_process_whatever_it_is_asked(self, node: Any) -> None:
        mx = node(4, expect=1, rate_limit=RateLimitConfig(connections=100, per=60))
        # The node process serves itself: no worker was forked.
        assert mx.workers == [mx.process.pid]
        mx.stop()
        assert mx.stderr == "lab.nodes: mx runs in one process (the connection rate limit)\n"

    def test_a_bad_worker_count_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        config_file = tmp_path / "mx.json"
        config_file.write_text(mx_config(tmp_path / "mx").model_dump_json())
        done = subprocess.run(
            [sys.executable, "-m", "lab.nodes", "mx", str(config_file), "--workers", "0"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2
        assert "not a number of workers from 1 to 64: '0'" in done.stderr
        assert "Traceback" not in done.stderr


class TestSharedGate:
    def test_counts_match_a_plain_counter_through_admits_and_releases(self) -> None:
        gate = SharedSessionGate(connections=40, per_client=3, fd_limit=1 << 16)
        model: Counter[str] = Counter()
        rng = random.Random(12)
        clients = [f"10.0.{n // 256}.{n % 256}" for n in range(30)]
        for _ in range(5000):
            client = rng.choice(clients)
            if rng.random() < 0.55:
                expected = model[client] < 3
                assert gate.admit_client(client) is expected
                model[client] += expected
            elif model[client]:
                gate.release_client(client)
                model[client] -= 1
        for client in clients:
            for _ in range(model[client]):
                gate.release_client(client)
            assert gate.admit_client(client)  # every count came back to zero

    def test_the_overall_count_is_shared_with_a_forked_process(self) -> None:
        gate = SharedSessionGate(connections=2, per_client=1, fd_limit=1 << 16)
        assert gate.open_session()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if gate.open_session() and not gate.open_session() else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert gate.open == 2
        assert not gate.open_session()


class TestSharedEventLog:
    def test_processes_appending_to_one_log_never_split_a_line(self, tmp_path: Path) -> None:
        padding = "x" * 3000  # a turn's lines run far past one buffer of the file

        async def emit_all(writer: int) -> None:
            log = EventLog(tmp_path, "mx")
            for number in range(300):
                log.emit("session", writer=writer, number=number, padding=padding)
                if number % 10 == 9:
                    await asyncio.sleep(0)  # the lines so far go out in one write
            log.close()

        pids = []
        for writer in range(3):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    asyncio.run(emit_all(writer))
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        lines = (tmp_path / "events.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in lines]
        for writer in range(3):
            numbers = [e["number"] for e in events if e["writer"] == writer]
            assert numbers == list(range(300))

    def test_the_bound_counts_every_writers_lines(self, tmp_path: Path) -> None:
        first, second = EventLog(tmp_path, "mx", max_bytes=4096), EventLog(tmp_path, "mx")
        second.emit("session", padding="y" * 3000)
        second.close()
        for number in range(20):
            first.emit("session", number=number)
        first.close()
        assert (tmp_path / "events.jsonl").stat().st_size <= 4096
        assert read_events(tmp_path)[-1]["event"] == "log-truncated"
