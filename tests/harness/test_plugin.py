"""The pytest plugin as a user's suite uses it: real smtplib against the lab's endpoints,
mailboxes that wait, DSNs, logs in a failing test's report, teardown however a test ends,
session reuse, the backend choice, and pytest-xdist workers."""

from __future__ import annotations

from pathlib import Path

import pytest

# What a user's application does: Python's own smtplib, STARTTLS verified against the lab CA.
SEND_INVOICE = """
import smtplib
from email.message import EmailMessage


def send_invoice(lab, *, port, timeout=5.0, to="bob@example.net"):
    message = EmailMessage()
    message["From"] = "alice@example.com"
    message["To"] = to
    message["Subject"] = "Invoice 42"
    message.set_content("Please find the invoice attached.")
    tls = lab.tls("relay")
    with smtplib.SMTP(lab.host, port, timeout=timeout) as smtp:
        smtp.starttls(context=tls.context())
        smtp.login("alice@example.com", "correct-horse")
        smtp.send_message(message)
"""


def test_a_users_test_sends_through_the_lab_and_reads_the_mailbox(run_project) -> None:
    result = run_project(
        {
            "mailer.py": SEND_INVOICE,
            "test_mail.py": """
            from mailer import send_invoice

            def test_invoice_arrives(smtp_lab):
                lab = smtp_lab("happy-path")
                send_invoice(lab, port=lab.port("relay", 587))
                [message] = lab.mailbox("bob@example.net").wait_for(1, timeout=10)
                assert message["Subject"] == "Invoice 42"
                assert "Please find the invoice" in message.get_payload()
                assert lab.backend == "local"
            """,
        },
        "--smtplab-backend",
        "local",
    )
    assert result.returncode == 0, result.output
    assert "1 passed" in result.output


def test_blocked_port_times_out_and_a_bounce_is_a_parsed_dsn(run_project) -> None:
    result = run_project(
        {
            "mailer.py": SEND_INVOICE,
            "test_mail.py": """
            import pytest
            from mailer import send_invoice

            def test_reports_blocked_port(smtp_lab):
                lab = smtp_lab("blocked-port-25")
                with pytest.raises(TimeoutError):
                    send_invoice(lab, port=lab.port("relay", 25), timeout=2)

            def test_bounce(smtp_lab):
                lab = smtp_lab("bad-recipient")
                result = lab.send()
                assert result.code == 250
                assert "RCPT TO:<" in lab.transcript
                [dsn] = lab.mailbox("alice@example.com").wait_for(1, timeout=10)
                assert dsn.get_content_type() == "multipart/report"
                status = dsn.get_payload()[1].get_payload()[1]
                assert status["Status"] == "5.1.1"
            """,
        },
        "--smtplab-backend",
        "local",
    )
    assert result.returncode == 0, result.output
    assert "2 passed" in result.output


def test_a_failing_test_report_carries_the_nodes_logs(run_project) -> None:
    result = run_project(
        {
            "test_mail.py": """
            def test_wrong(smtp_lab):
                lab = smtp_lab("bad-recipient")
                lab.send()
                lab.mailbox("alice@example.com").wait_for(1, timeout=10)
                assert lab.mailbox("bbo@example.net").messages() == ["a message"]
            """,
        },
        "--smtplab-backend",
        "local",
    )
    assert result.returncode == 1, result.output
    assert "1 failed" in result.output
    assert " relay log " in result.output
    assert " mx log " in result.output
    assert '"decision": "user-unknown"' in result.output  # the mx's own event
    assert "client transcript" in result.output


def test_labs_are_torn_down_after_failure_and_keyboard_interrupt(
    run_project, tmp_path: Path
) -> None:
    result = run_project(
        {
            "test_mail.py": """
            from pathlib import Path

            def test_fails(smtp_lab):
                lab = smtp_lab("happy-path")
                Path("failed-lab").write_text(str(lab.data_dir("")))
                assert False

            def test_interrupted(smtp_lab):
                lab = smtp_lab("happy-path")
                Path("interrupted-lab").write_text(str(lab.data_dir("")))
                raise KeyboardInterrupt
            """,
        },
        "--smtplab-backend",
        "local",
    )
    assert result.returncode == 2, result.output  # pytest's code for an interrupted run
    assert "KeyboardInterrupt" in result.output
    for name in ("failed-lab", "interrupted-lab"):
        lab_dir = Path((tmp_path / name).read_text())
        assert lab_dir.name.startswith("smtplab-happy-path-")
        assert not lab_dir.exists(), f"{name}: {lab_dir} left behind"


def test_session_lab_is_shared_then_removed(run_project, tmp_path: Path) -> None:
    result = run_project(
        {
            "test_mail.py": """
            from pathlib import Path

            def test_first(smtp_lab_session):
                lab = smtp_lab_session("happy-path")
                lab.send()
                lab.mailbox("bob@example.net").wait_for(1, timeout=10)
                Path("first").write_text(lab.id + " " + str(lab.data_dir("")))

            def test_second(smtp_lab_session):
                lab = smtp_lab_session("happy-path")
                assert Path("first").read_text().split()[0] == lab.id
                assert len(lab.mailbox("bob@example.net").messages()) == 1
            """,
        },
        "--smtplab-backend",
        "local",
    )
    assert result.returncode == 0, result.output
    assert not Path((tmp_path / "first").read_text().split()[1]).exists()


def test_marker_picks_the_backend_and_a_path_names_a_scenario(run_project) -> None:
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "greylisted.yaml"
    result = run_project(
        {
            "test_mail.py": f"""
            import pytest

            @pytest.mark.smtplab(backend="local")
            def test_marked(smtp_lab):
                lab = smtp_lab({str(scenario)!r})
                assert lab.backend == "local"
                assert lab.scenario.id == "greylisted"
            """,
        },
    )
    assert result.returncode == 0, result.output


def test_xdist_workers_run_their_own_labs(run_project, tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    tests = "\n".join(
        f"""
def test_{index}(smtp_lab):
    lab = smtp_lab("happy-path")
    assert lab.send().code == 250
    lab.mailbox("bob@example.net").wait_for(1, timeout=10)
    Path("lab-{index}").write_text(f"{{lab.id}} {{lab.port('relay', 587)}} {{os.getpid()}}")
"""
        for index in range(4)
    )
    result = run_project(
        {"test_mail.py": "import os\nfrom pathlib import Path\n" + tests},
        "-n",
        "2",
        "--smtplab-backend",
        "local",
    )
    assert result.returncode == 0, result.output
    rows = [(tmp_path / f"lab-{index}").read_text().split() for index in range(4)]
    assert len({row[0] for row in rows}) == 4  # a lab per test, no id shared
    assert len({row[2] for row in rows}) == 2  # and they ran on both workers
