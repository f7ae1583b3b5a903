"""The client node (`lab.nodes.client`): one send as the configured mail program, its
command line and its settings file.

It lives beside the SMTP tests because it uses their aiosmtpd fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.net import DirectConnector
from lab.nodes.client import main, run_once
from lab.nodes.config import ClientConfig, DnsConfig
from lab.scenario.model import Outcome, Stage
from tests.smtp.conftest import StartServer
from tests.smtp.helpers import HELO, RECIPIENT, assert_stopped, make_settings


async def test_client_node_run_once(smtp_server: StartServer, tmp_path: Path) -> None:
    server = smtp_server()
    config = ClientConfig(
        name="client", data_dir=tmp_path, hostname=HELO, settings=make_settings(server.port)
    )
    result = await run_once(config, connector=DirectConnector())
    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert result.message_id.endswith(f"@{HELO}>")

    by_name = make_settings(server.port, server="mail.lab.test")
    result = await run_once(config, connector=DirectConnector(), settings_override=by_name)
    assert_stopped(result, Outcome.DNS_FAILURE, Stage.DNS)
    assert "no lab resolver" in result.text


def test_client_node_main(
    smtp_server: StartServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    config = ClientConfig(
        name="client", data_dir=tmp_path, hostname=HELO, settings=make_settings(server.port)
    )
    # The bare node config, as `python -m lab.nodes` reads it for every role.
    path = tmp_path / "client.json"
    path.write_text(config.model_dump_json(), encoding="utf-8")
    override = make_settings(server.port, to=["carol@remote.example"])

    assert main(path, override.model_dump_json(by_alias=True)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outcome"] == "delivered"
    assert data["accepted_recipients"] == ["carol@remote.example"]

    assert main(path, None) == 0
    assert json.loads(capsys.readouterr().out)["accepted_recipients"] == [RECIPIENT]

    assert main(path, '{"server": "x"}') == 2
    assert capsys.readouterr().err.startswith("client: ")
    assert main(tmp_path / "missing.json", None) == 2


def test_client_node_refuses_other_configs_and_the_old_wrapped_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dns = DnsConfig(name="dns", data_dir=tmp_path, zones=[], records=[])
    other = tmp_path / "dns.json"
    other.write_text(dns.model_dump_json(), encoding="utf-8")
    assert main(other, None) == 2
    assert "not a client" in capsys.readouterr().err
    config = ClientConfig(
        name="client", data_dir=tmp_path, hostname=HELO, settings=make_settings(25)
    )
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"node": config.model_dump(mode="json")}), encoding="utf-8")
    assert main(wrapped, None) == 2
    assert capsys.readouterr().err.startswith("client: ")


def test_settings_file_keeps_the_password_off_the_command_line(
    smtp_server: StartServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.nodes.__main__ import main as node_main

    server = smtp_server()
    config = ClientConfig(
        name="client", data_dir=tmp_path, hostname=HELO, settings=make_settings(server.port)
    )
    path = tmp_path / "client.json"
    path.write_text(config.model_dump_json(), encoding="utf-8")
    settings = tmp_path / "settings.json"
    override = make_settings(server.port, to=["carol@remote.example"])
    settings.write_text(override.model_dump_json(by_alias=True), encoding="utf-8")
    assert node_main(["client", str(path), "--settings-file", str(settings)]) == 0
    assert json.loads(capsys.readouterr().out)["accepted_recipients"] == ["carol@remote.example"]
    assert node_main(["client", str(path), "--settings-file", str(tmp_path / "none")]) == 2
    assert "cannot read" in capsys.readouterr().err
