"""`smtplab diagnose` and `smtplab catalog` as a user runs them.

The `--server` mode is run in a subprocess against servers of this test's
event loop (a lab's published endpoint, a purpose-built fake), so the test
awaits the subprocess while its servers keep answering.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from lab.cli import main
from lab.runtime.base import running_lab
from lab.runtime.local import LocalBackend, LocalLab
from lab.scenario.loader import load_scenario
from tests.diagnosis.conftest import World
from tests.diagnosis.fakesmtp import Behaviour
from tests.diagnosis.postfixlike import PostfixPolicy, PostfixServers
from tests.diagnosis.test_scenarios import SCENARIOS

SMTPLAB = [sys.executable, "-m", "lab.cli"]


async def smtplab(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run the command without blocking this loop (its servers must keep answering)."""
    process = await asyncio.create_subprocess_exec(
        *SMTPLAB, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_diagnose_blocked_port_25_as_json() -> None:
    result = subprocess.run(
        [*SMTPLAB, "diagnose", "blocked-port-25", "--backend", "local", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr  # swaks: failed at connect
    data = json.loads(result.stdout)
    assert data["diagnosis"] == "port-blocked-timeout"
    assert data["fix_verified"] is True
    assert data["remedy"]["settings"]["port"] == 587
    assert data["remedy"]["settings"]["auth"]["password"] == "****"
    assert data["steps"][1]["probe"] == "ports"
    assert data["steps"][-1]["probe"] == "fix"
    assert "correct-horse" not in result.stdout


async def test_diagnose_server_against_a_published_lab_endpoint() -> None:
    scenario = load_scenario(SCENARIOS / "auth-required.yaml")
    async with running_lab(scenario, LocalBackend()) as lab:
        assert isinstance(lab, LocalLab)
        endpoints = await lab.publish_endpoints()
        submission = next(e for e in endpoints if e.node == "relay" and e.lab_port == 587)
        code, out, err = await smtplab(
            "diagnose",
            "--server", "127.0.0.1",
            "--port", str(submission.port),
            "--security", "starttls",
            "--insecure",  # the lab certificate names mail.example.com, not 127.0.0.1
            "--from", "alice@example.com",
            "--to", "bob@example.net",
            "--dns", f"127.0.0.1:{lab.dns_port}",
            "--timeout", "2",
            "--json",
        )  # fmt: skip
    assert code == 23, err  # refused at MAIL
    data = json.loads(out)
    assert data["diagnosis"] == "auth-required"
    assert data["target"] == "server 127.0.0.1"
    assert data["fix_verified"] is None  # no credentials were given: nothing to re-send with
    assert {step["probe"] for step in data["steps"]} >= {"resolve", "ports", "banner", "mail"}


async def test_diagnose_server_markdown_names_a_mistyped_mailbox(world: World) -> None:
    port = await world.serve(
        Behaviour(
            tls=world.pki.context(),
            rcpt_replies={"bbo@example.org": "550 5.1.1 <bbo@example.org>: User unknown"},
        )
    )
    code, out, err = await smtplab(
        "diagnose",
        "--server", "mail.example.org",
        "--port", str(port),
        "--user", "alice@example.org",
        "--password", "s3cret-Pa55",
        "--from", "alice@example.org",
        "--to", "bbo@example.org",
        "--ca-file", str(world.pki.ca_file),
        "--dns", f"127.0.0.1:{world.dns_port}",
        "--timeout", "2",
        "--markdown",
    )  # fmt: skip
    assert code == 24, err  # refused at RCPT
    assert out.startswith(
        "## ❌ SMTP diagnosis: The recipient's mailbox does not exist (`unknown-user`)"
    )
    assert "550 5.1.1 <bbo@example.org>: User unknown" in out
    assert "s3cret-Pa55" not in out
    assert "AUTH PLAIN ****" in out or "| AUTH | ok |" in out


def test_catalog_lists_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) >= 30
    assert {"id", "title", "match", "cause", "remedy", "references"} <= set(entries[0])
    assert main(["catalog"]) == 0
    assert "port-blocked-timeout" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "name a scenario (see `smtplab list`) or give --server HOST"),
        (["happy-path", "--server", "x"], "not both"),
        (["happy-path", "--port", "25"], "--port: only with --server"),
        (["--server", "mail.example.com", "--to", "b@example.net"], "--server needs --from"),
        (["--server", "h", "--from", "a@x.org", "--to", "b@x.org", "--user", "u"], "together"),
        (["--server", "h", "--from", "a@x.org", "--to", "b@x.org", "--port", "99999"], "--port:"),
        (["--server", "h", "--from", "a@x.org", "--to", "b@x.org", "--timeout", "0"], "--timeout"),
        (
            ["--server", "h", "--from", "a@x.org", "--to", "b@x.org", "--ca-file", "/no/such.pem"],
            "no such file",
        ),
        (
            [
                "--server",
                "h",
                "--from",
                "a@x.org",
                "--to",
                "b@x.org",
                "--ca-file",
                "/etc/hostname",
                "--insecure",
            ],
            "exclude each other",
        ),
        (
            ["--server", "h", "--from", "a@x.org", "--to", "b@x.org", "--backend", "local"],
            "--backend is for scenarios",
        ),
        (["no-such-scenario"], "unknown scenario 'no-such-scenario'"),
    ],
)
def test_bad_arguments_are_one_clear_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diagnose", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1, captured.err


def test_argparse_errors_exit_2_without_a_traceback() -> None:
    result = subprocess.run(
        [*SMTPLAB, "diagnose", "--server", "h", "--port", "abc"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid int value: 'abc'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_engine_imports_neither_the_tui_nor_docker() -> None:
    code = "import sys, lab.diagnosis.engine, lab.diagnosis.report; print(' '.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not {name for name in loaded if name.split(".")[0] in {"textual", "tui", "docker"}}


async def _postfix_like(world: World) -> tuple[PostfixServers, int]:
    servers = PostfixServers()
    return servers, await servers.start(PostfixPolicy(tls=world.pki.context()))


def _server_args(world: World, port: int, *extra: str) -> list[str]:
    return [
        "diagnose",
        "--server", "mail.example.org",
        "--port", str(port),
        "--from", "alice@example.org",
        "--to", "bob@example.org",
        "--dns", f"127.0.0.1:{world.dns_port}",
        "--timeout", "2",
        *extra,
    ]  # fmt: skip


async def test_ca_file_and_insecure_do_what_they_say(world: World) -> None:
    # The certificate comes from the test's private CA, which the system does not trust.
    servers, port = await _postfix_like(world)
    login = ("--user", "alice@example.org", "--password", "s3cret-Pa55", "--json")
    try:
        untrusted = await smtplab(*_server_args(world, port, *login))
        trusted = await smtplab(
            *_server_args(world, port, *login, "--ca-file", str(world.pki.ca_file))
        )
        insecure = await smtplab(*_server_args(world, port, *login, "--insecure"))
    finally:
        await servers.close()
    code, out, err = untrusted
    data = json.loads(out)
    assert data["diagnosis"] == "certificate-untrusted", err
    steps = {(step["probe"], step["status"]) for step in data["steps"]}
    # A finding, and the walk went on without verification to the end.
    assert ("starttls", "fail") in steps
    assert ("starttls", "warn") in steps
    assert ("data", "ok") in steps
    for code, out, err in (trusted, insecure):
        assert code == 0, err
        assert json.loads(out)["diagnosis"] == "healthy"


async def test_unprovable_password_fix_says_so(world: World) -> None:
    servers, port = await _postfix_like(world)
    try:
        code, out, err = await smtplab(
            *_server_args(
                world, port, "--user", "alice@example.org", "--password", "wrong",
                "--ca-file", str(world.pki.ca_file), "--markdown",
            )
        )  # fmt: skip
    finally:
        await servers.close()
    assert code == 28, err  # refused at AUTH
    assert "(`auth-bad-credentials`)" in out
    assert "535 5.7.8 Error: authentication failed: authentication failure" in out
    assert "**Fix verified:** not proven" in out
    assert "use the full address" not in out
