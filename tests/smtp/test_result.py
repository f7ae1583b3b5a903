"""`SendResult` as JSON: what a client container prints and a backend reads back."""

from __future__ import annotations

import json

from lab.smtp.result import SendResult
from tests.smtp.conftest import SERVER_SUBJECT, Pki, StartServer
from tests.smtp.helpers import make_settings, send


async def test_result_json_round_trip(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(tls_context=pki.server_context())
    result = await send(make_settings(server.port, security="starttls"), ca_file=pki.ca_file)
    data = json.loads(json.dumps(result.to_json()))
    assert {
        "outcome",
        "stage",
        "code",
        "enhanced",
        "text",
        "message_id",
        "transcript",
        "timings",
    } <= set(data)
    assert data["outcome"] == "delivered"
    assert data["stage"] == "data"
    again = SendResult.from_json(data)
    assert again.to_json() == data
    assert again.tls is not None
    assert again.tls.subject == SERVER_SUBJECT
