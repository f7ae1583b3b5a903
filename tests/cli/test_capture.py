"""`smtplab capture` as a user runs it: the summary, JSON, the pcap file, and one-line
errors for a hop that does not exist or a pcap the local backend cannot give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_backends import env, smtplab

__all__ = ["env"]  # the fixture: a state directory of its own, no backend preset


def test_blocked_port_shows_the_unanswered_attempt(env: dict[str, str]) -> None:
    result = smtplab("capture", "blocked-port-25", "--backend", "local", env=env)
    assert result.returncode == 0, result.stderr
    assert "What crossed isp on the local backend:" in result.stdout
    assert "-> 10." in result.stdout
    assert ":25  no answer: dropped, the client gave up after" in result.stdout
    assert "(isp drops port 25)" in result.stdout


def test_json_with_the_fix_shows_the_submission_port_open(env: dict[str, str]) -> None:
    result = smtplab("capture", "blocked-port-25", "--fix", "--json", "--backend", "local", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["hop"] == "isp"
    [flow] = report["flows"]
    assert (flow["server_port"], flow["outcome"]) == (587, "established")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--hop", "mx"], "smtplab: no router 'mx' in this scenario; its routers: isp"),
        (["--pcap", "x.pcap"], "smtplab: --pcap needs the docker backend"),
    ],
    ids=["unknown-hop", "pcap-on-local"],
)
def test_bad_arguments_are_one_line_and_exit_2(
    env: dict[str, str], arguments: list[str], message: str
) -> None:
    result = smtplab("capture", "blocked-port-25", "--backend", "local", *arguments, env=env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(message)


@pytest.mark.docker
def test_docker_capture_keeps_the_pcap(
    env: dict[str, str], node_image: str, tmp_path: Path
) -> None:
    pcap = tmp_path / "port25.pcap"
    result = smtplab(
        "capture", "blocked-port-25", "--backend", "docker", "--pcap", str(pcap), env=env
    )
    assert result.returncode == 0, result.stderr
    assert "SYNs, no answer in" in result.stdout
    assert pcap.read_bytes()[:4] == b"\xd4\xc3\xb2\xa1"  # pcap magic, little-endian
