"""TLS as the mail program meets it: STARTTLS missing, certificates refused, trust store
unreadable, and implicit TLS and STARTTLS ports mixed up.

The servers present certificates from the lab's own issuer (`lab.nodes.tls`).
"""

from __future__ import annotations

from pathlib import Path

from lab.scenario.model import Outcome, Stage
from lab.smtp.transcript import Direction
from tests.smtp.conftest import SERVER_NAME, Pki, StartServer
from tests.smtp.helpers import assert_stopped, localhost, make_settings, said, send


async def test_starttls_not_offered(smtp_server: StartServer) -> None:
    server = smtp_server()
    result = await send(make_settings(server.port, security="starttls"))
    assert_stopped(result, Outcome.TLS_FAILED, Stage.STARTTLS)
    assert "does not offer STARTTLS" in result.text
    assert "STARTTLS" not in said(result, Direction.CLIENT)


async def test_certificate_for_another_name(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(tls_context=pki.server_context(wrong_name=True))
    settings = make_settings(server.port, server=SERVER_NAME, security="starttls")
    result = await send(settings, resolve=localhost, ca_file=pki.ca_file)
    assert_stopped(result, Outcome.TLS_FAILED, Stage.STARTTLS)
    assert result.text.startswith("CERTIFICATE_VERIFY_FAILED: Hostname mismatch")
    assert f"'{SERVER_NAME}'" in result.text
    assert f"TLS handshake failed: {result.text}" in said(result, Direction.NOTE)


async def test_unknown_ca(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(tls_context=pki.server_context())
    settings = make_settings(server.port, server=SERVER_NAME, security="starttls")
    result = await send(settings, resolve=localhost, ca_file=None)  # system trust only
    assert_stopped(result, Outcome.TLS_FAILED, Stage.STARTTLS)
    # A lab server sends its chain up to the lab's root, so OpenSSL names the unknown root.
    expected = "CERTIFICATE_VERIFY_FAILED: self-signed certificate in certificate chain"
    assert result.text.startswith(expected)


async def test_unreadable_ca_file_is_a_tls_failure(
    smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server()
    settings = make_settings(server.port, security="tls")
    result = await send(settings, ca_file=tmp_path / "missing.pem")
    assert_stopped(result, Outcome.TLS_FAILED, Stage.CONNECT)
    assert result.text.startswith("cannot load trusted certificates from ")


async def test_implicit_tls_against_a_starttls_port(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(tls_context=pki.server_context())
    settings = make_settings(server.port, security="tls", timeout=0.5)
    result = await send(settings, ca_file=pki.ca_file)
    assert_stopped(result, Outcome.TLS_FAILED, Stage.CONNECT)
    assert "WRONG_VERSION_NUMBER" in result.text or "timed out" in result.text


async def test_starttls_against_an_implicit_tls_port(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(ssl_context=pki.server_context())
    settings = make_settings(server.port, security="starttls", timeout=0.3)
    result = await send(settings, ca_file=pki.ca_file)
    assert_stopped(result, Outcome.NO_BANNER, Stage.BANNER)
