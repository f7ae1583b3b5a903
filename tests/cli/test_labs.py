"""`smtplab labs`/`down`/`reap` and local lab records: a pid is never trusted alone.

The owner of a local lab is its `smtplab up` process named by pid *and* start time.
A record whose pid now belongs to another process (simulated with a real process
whose pid is recorded with a wrong start time) is a dead lab: that process is never
signalled, and `down` removes the dead lab's directory (TLS keys, mail).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.runtime.labels import process_token
from tests.cli.test_backends import NO_ENGINE, smtplab


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {key: value for key, value in os.environ.items() if key != "SMTPLAB_BACKEND"}
    values.update(SMTPLAB_STATE=str(tmp_path / "state"), COLUMNS="200", DOCKER_HOST=NO_ENGINE)
    return values


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A real process that merely happens to have the recorded pid."""
    process = subprocess.Popen(["sleep", "120"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def write_record(env: dict[str, str], lab_id: str, owner: str, data: Path) -> Path:
    path = Path(env["SMTPLAB_STATE"]) / "labs" / f"{lab_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "id": lab_id,
                "scenario": "greylisted",
                "owner": owner,
                "user": "alice",
                "data": str(data),
            }
        )
    )
    return path


def lab_dir(tmp_path: Path, lab_id: str) -> Path:
    directory = tmp_path / f"smtplab-{lab_id}"
    (directory / "tls").mkdir(parents=True)
    (directory / "tls" / "ca.key").write_text("PRIVATE KEY")
    return directory


def test_a_reused_pid_is_a_dead_lab_and_is_never_signalled(
    env: dict[str, str], tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    token = process_token(bystander.pid)
    assert token is not None
    pid, _, start = token.partition(":")
    directory = lab_dir(tmp_path, "local-greylisted-aaaaaa")
    record = write_record(env, "local-greylisted-aaaaaa", f"{pid}:{int(start) - 7}", directory)

    listed = json.loads(smtplab("labs", "--json", env=env).stdout)
    assert [(row["id"], row["state"]) for row in listed] == [("local-greylisted-aaaaaa", "dead")]
    assert listed[0]["owner"] == f"dead (was pid {pid}, user alice)"
    table = smtplab("labs", env=env).stdout
    assert "Running labs" not in table
    assert "Dead labs" in table
    assert "local-greylisted-aaaaaa" in table

    result = smtplab("down", "local-greylisted-aaaaaa", env=env)
    assert result.returncode == 0, result.stderr
    assert "was no longer running; removed its record and" in result.stdout
    assert bystander.poll() is None  # not signalled
    assert not directory.exists()
    assert not record.exists()


def test_the_recorded_process_itself_is_signalled(
    env: dict[str, str], tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    token = process_token(bystander.pid)
    assert token is not None
    write_record(env, "local-greylisted-bbbbbb", token, lab_dir(tmp_path, "b"))
    [row] = json.loads(smtplab("labs", "--json", env=env).stdout)
    assert row["state"] == "running"
    assert row["owner"] == f"smtplab up (pid {bystander.pid}, user alice)"
    result = smtplab("down", "local-greylisted-bbbbbb", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"stopping local-greylisted-bbbbbb (pid {bystander.pid})"
    assert bystander.wait(timeout=10) == -signal.SIGTERM


def test_down_all_names_the_labs_and_their_owners_first(
    env: dict[str, str], tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    pid = bystander.pid
    write_record(env, "local-a-111111", f"{pid}:1", lab_dir(tmp_path, "a"))
    write_record(env, "local-b-222222", f"{pid}:2", lab_dir(tmp_path, "b"))
    result = smtplab("down", "--all", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "stopping 2 lab(s):",
        f"  local-a-111111 (local, greylisted): dead (was pid {pid}, user alice)",
        f"  local-b-222222 (local, greylisted): dead (was pid {pid}, user alice)",
    ]
    assert bystander.poll() is None
    assert list(tmp_path.glob("smtplab-*")) == []


def test_a_record_never_deletes_a_directory_the_backend_did_not_make(
    env: dict[str, str], tmp_path: Path
) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    write_record(env, "local-x-333333", "999999999:1", precious)
    result = smtplab("down", "local-x-333333", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "local-x-333333 was no longer running; record removed"
    assert precious.is_dir()


def test_up_then_down_stops_the_lab_and_removes_its_files(env: dict[str, str]) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "up", "happy-path", "--backend", "local"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        records = Path(env["SMTPLAB_STATE"]) / "labs"
        deadline = time.monotonic() + 60
        while not list(records.glob("*.json")) and up.poll() is None:
            assert time.monotonic() < deadline, "no lab record after 60 s"
            time.sleep(0.1)
        [row] = json.loads(smtplab("labs", "--json", env=env).stdout)
        assert row["state"] == "running"
        assert row["owner"].startswith(f"smtplab up (pid {up.pid}, ")
        data = Path(json.loads((records / f"{row['id']}.json").read_text())["data"])
        assert (data / "tls").is_dir()
        result = smtplab("down", row["id"], env=env)
        assert result.stdout.strip() == f"stopping {row['id']} (pid {up.pid})"
        assert up.wait(timeout=30) == 0
        assert not data.exists()
        assert list(records.glob("*.json")) == []
    finally:
        if up.poll() is None:
            up.kill()
        up.communicate()


def test_up_state_that_is_not_a_directory_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = smtplab("up", "happy-path", "--backend", "local", "--state", str(not_a_dir), env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == f"smtplab: --state {not_a_dir}: not a directory"
