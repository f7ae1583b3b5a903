"""How the planner reads names: IP literals."""

from __future__ import annotations

from lab.diagnosis.planner.names import is_ip_literal


def test_is_ip_literal() -> None:
    assert is_ip_literal("[192.0.2.1]")
    assert is_ip_literal("::1")
    assert not is_ip_literal("mail.example.com")
