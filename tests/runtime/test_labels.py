"""Labels: one module owns the keys; callers cannot forge ownership."""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any

import pytest

import lab
from lab.runtime import labels


def test_create_labels_carries_owner_and_version() -> None:
    made = labels.create_labels("lab-1", node="mx", scenario="happy-path", purpose="test")
    assert made == {
        labels.LAB: "lab-1",
        labels.SESSION: labels.SESSION_ID,
        labels.VERSION: lab.__version__,
        labels.HOST: socket.gethostname(),
        labels.USER: getpass.getuser(),
        labels.PID: labels.process_token(),
        labels.NODE: "mx",
        labels.SCENARIO: "happy-path",
        "purpose": "test",
    }


def test_detached_labs_name_no_owner_process() -> None:
    assert labels.PID not in labels.create_labels("lab-1", detached=True)


@pytest.mark.parametrize("key", ["smtplab.lab", "smtplab.anything", "smtplab.pid"])
def test_reserved_namespace_is_rejected(key: str) -> None:
    extra: dict[str, Any] = {key: "forged"}
    with pytest.raises(ValueError, match="reserved smtplab"):
        labels.create_labels("lab-1", **extra)


def test_all_keys_are_reserved_and_distinct() -> None:
    assert all(key.startswith(labels.PREFIX) for key in labels.RESERVED)
    assert len(labels.RESERVED) == 11


def test_process_token_and_liveness() -> None:
    token = labels.process_token()
    assert token is not None
    assert token.startswith(f"{os.getpid()}:")
    assert labels.owner_alive(token)
    pid = token.partition(":")[0]
    assert not labels.owner_alive(f"{pid}:1")  # same pid, other start time: recycled
    assert not labels.owner_alive("999999999:1")
    assert not labels.owner_alive("garbage")
    assert labels.process_token(999999999) is None


def test_selector() -> None:
    assert labels.selector(labels.LAB) == {"label": ["smtplab.lab"]}
    assert labels.selector(labels.LAB, "x") == {"label": ["smtplab.lab=x"]}
