"""`smtplab export --compose`: the exported project comes up with the compose implementation
on this machine (Debian's docker-compose), the customer's mail program gets what the
docker backend gives it (delivery, the ISP's timeout, a DSN), and `down` leaves nothing
labelled behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.catalog import load
from lab.nodes.mailserver.dsn import parse_dsn
from lab.nodes.mailserver.store import MailStore
from lab.runtime.docker import DockerBackend
from lab.runtime.docker.compose import FILES_DIR, ComposeExport, export_compose, wait_healthy
from lab.scenario.model import Outcome
from lab.smtp.result import SendResult
from tests.runtime.conftest import labelled_leftovers

pytestmark = pytest.mark.docker


def compose_command() -> list[str]:
    """The compose implementation here: Debian's `docker-compose`, else the CLI plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    pytest.skip("no compose implementation (.ci/install-docker installs docker-compose)")


def compose(exported: ComposeExport, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), *args],
        cwd=exported.directory,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path, docker_client: Any, node_image: str) -> Iterator[Any]:
    """`up(scenario)`: export and bring up; every project is taken down afterwards."""
    started: list[ComposeExport] = []
    backend = DockerBackend(docker_client, image=node_image)

    def up(scenario_id: str) -> ComposeExport:
        # Subnets are chosen when exporting: on an engine shared with other runs one may be
        # taken before `up`; then export afresh, as the backend plans afresh.
        for attempt in range(3):
            exported = export_compose(load(scenario_id), tmp_path / f"try{attempt}", backend)
            result = compose(exported, "up", "-d")
            started.append(exported)
            if result.returncode == 0:
                wait_healthy(docker_client, exported)
                return exported
            compose(exported, "down")
            if "overlap" not in result.stderr:
                raise AssertionError(result.stderr)
        raise AssertionError(f"no free subnets after 3 exports: {result.stderr}")

    yield up
    for exported in started:
        down = compose(exported, "down")
        assert down.returncode == 0, down.stderr


def send(exported: ComposeExport) -> SendResult:
    result = compose(exported, "exec", "-T", exported.client, *exported.send_command())
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout + result.stderr
    return SendResult.from_json(json.loads(lines[-1]))


def mailbox(exported: ComposeExport, node: str, address: str, timeout: float = 20) -> list[bytes]:
    store = MailStore(exported.directory / FILES_DIR / node / "mailboxes")
    deadline = time.monotonic() + timeout
    while not (messages := [m.data for m in store.messages(address)]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return messages


def test_happy_path_delivers_through_the_compose_project(project: Any, docker_client: Any) -> None:
    exported = project("happy-path")
    result = send(exported)
    assert result.outcome is Outcome.DELIVERED
    assert result.tls is not None  # STARTTLS verified against the exported lab CA
    [message] = mailbox(exported, "mx", "bob@example.net")
    assert result.message_id.encode() in message
    compose(exported, "down")
    assert labelled_leftovers(docker_client, exported.lab_id) == []


def test_blocked_port_25_times_out_as_on_the_docker_backend(project: Any) -> None:
    exported = project("blocked-port-25")
    expect = exported.topology.scenario.expect
    result = send(exported)
    assert (result.outcome, result.stage) == (expect.outcome, expect.stage)
    assert "timeout" in result.text


def test_bad_recipient_bounces_with_a_dsn(project: Any, docker_client: Any) -> None:
    exported = project("bad-recipient")
    expect = exported.topology.scenario.expect
    result = send(exported)
    assert result.code == 250  # the relay takes it; the MX refuses it later
    [raw] = mailbox(exported, "relay", "alice@example.com")
    dsn = parse_dsn(raw)
    assert dsn.original_message_id == result.message_id
    [recipient] = dsn.recipients
    assert recipient.status == expect.enhanced
    assert recipient.reply_code == expect.code
    compose(exported, "down")
    assert labelled_leftovers(docker_client, exported.lab_id) == []
