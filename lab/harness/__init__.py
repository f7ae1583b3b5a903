"""The test harness: start a scenario's lab from synchronous code and use it as a client
application would (`lab.pytest_plugin` wraps it as pytest fixtures).

- `handle`: `LabHandle` (endpoints, TLS details, mailboxes, mail program, logs) and
  `start_lab`;
- `mailbox`: `Mailbox.wait_for`, messages as `email.message.Message`;
- `loop`: the background event loop a lab runs on;
- `choose`: which backend a test's lab runs on.
"""

from __future__ import annotations

from lab.harness.choose import choose_backend
from lab.harness.handle import LabHandle, TlsDetails, start_lab
from lab.harness.mailbox import Mailbox

__all__ = ["LabHandle", "Mailbox", "TlsDetails", "choose_backend", "start_lab"]
