"""The pytest plugin's fixtures on the docker backend: a user's test sends with smtplib
through the published endpoints and reads the mailboxes the containers write."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.project import run_pytest
from tests.harness.test_plugin import SEND_INVOICE


@pytest.mark.docker
def test_the_same_user_test_on_docker(tmp_path: Path, node_image: str) -> None:
    del node_image  # built once per session before the inner run needs it
    result = run_pytest(
        tmp_path,
        {
            "mailer.py": SEND_INVOICE,
            "test_mail.py": """
            import pytest
            from mailer import send_invoice

            def test_invoice_arrives(smtp_lab):
                lab = smtp_lab("happy-path")
                assert lab.backend == "docker"
                send_invoice(lab, port=lab.port("relay", 587))
                [message] = lab.mailbox("bob@example.net").wait_for(1, timeout=20)
                assert message["Subject"] == "Invoice 42"

            def test_bounce(smtp_lab):
                lab = smtp_lab("bad-recipient")
                lab.send()
                [dsn] = lab.mailbox("alice@example.com").wait_for(1, timeout=20)
                assert dsn.get_content_type() == "multipart/report"
            """,
        },
        "--smtplab-backend",
        "docker",
    )
    assert result.returncode == 0, result.output
