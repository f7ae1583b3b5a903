"""A Postfix node as a node like the others: it comes up when it greets, carries the lab's
labels, writes Postfix's own log lines to the container log (`smtplab logs`), and delivers
into the Maildirs the lab reads mailboxes from."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lab.catalog import load
from lab.runs import run_once
from lab.runtime import labels
from lab.runtime.base import running_lab
from lab.runtime.docker import DockerBackend, DockerLab
from lab.scenario.model import Outcome
from lab.scenario.mta import with_mta
from lab.scenario.vocabulary import MtaSoftware

pytestmark = pytest.mark.docker


def test_happy_path_through_postfix_relay_and_mx(docker_client: Any, node_image: str) -> None:
    scenario = with_mta(load("happy-path"), MtaSoftware.POSTFIX)
    backend = DockerBackend(docker_client, image=node_image)

    async def run() -> tuple[Any, str, str, dict[str, str], list[bytes]]:
        async with running_lab(scenario, backend) as lab:
            assert isinstance(lab, DockerLab)
            report = await run_once(lab)
            container = docker_client.containers.get(lab.containers["mx"])
            return (
                report,
                lab.logs("relay", tail=200),
                lab.logs("mx", tail=200),
                container.labels,
                lab.mailbox("mx", "bob@example.net"),
            )

    report, relay_log, mx_log, mx_labels, mailbox = asyncio.run(run())
    assert report.outcome is Outcome.DELIVERED, report.text
    assert any("ESMTP Postfix" in line.text for line in report.send.transcript.lines)
    assert "postfix/smtpd" in relay_log
    assert "status=sent" in relay_log  # the relay's own words for the hand-off to the mx
    assert "postfix/virtual" in mx_log
    assert "delivered to maildir" in mx_log
    assert mx_labels[labels.LAB]
    assert len(mailbox) == 1
    assert report.send.message_id.encode() in mailbox[0]
