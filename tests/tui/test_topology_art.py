"""The text topology: what each node shows, marks without colour, both layouts."""

from __future__ import annotations

import pytest

from lab.catalog import load
from tui.topology_art import COLUMNS_MIN_WIDTH, MIN_WIDTH, Mark, Role, draw, fit


@pytest.fixture(scope="module")
def blocked():  # type: ignore[no-untyped-def]
    return load("blocked-port-25")


@pytest.mark.parametrize("layout", ["columns", "stack"])
def test_shows_the_ports_and_policies_that_matter(blocked, layout) -> None:  # type: ignore[no-untyped-def]
    text = draw(blocked, 110, layout=layout).text()
    for expected in (
        "office",  # the customer network
        "isp · ISP router",
        "out :25 drop",  # the port policy that breaks this case
        "other ports allow",
        "dns · DNS :53",
        "mail.example.com",
        ":587 STARTTLS+AUTH",  # what the relay demands per port
        ":465 TLS+AUTH",
        "mx.example.net",
        "→ mail.example.com:25 none",  # what the mail program is set to
    ):
        assert expected in text, f"{expected!r} missing from\n{text}"


@pytest.mark.parametrize("width", [MIN_WIDTH, 40, COLUMNS_MIN_WIDTH, 120, 200])
def test_every_row_has_the_width_asked_for(blocked, width) -> None:  # type: ignore[no-untyped-def]
    drawing = draw(blocked, width)
    assert drawing.rows
    assert {sum(len(span.text) for span in row) for row in drawing.rows} == {width}


def test_auto_layout_follows_width(blocked) -> None:  # type: ignore[no-untyped-def]
    wide, narrow = draw(blocked, 120), draw(blocked, 40)
    assert "▶" in wide.text()  # arrows between columns
    assert "▼ to internet" in narrow.text()
    assert narrow.height > wide.height


def test_a_fail_mark_survives_without_colour(blocked) -> None:  # type: ignore[no-untyped-def]
    plain = draw(blocked, 110).text()
    marked = draw(blocked, 110, marks={"isp": Mark.FAIL}).text()
    assert "✗ isp" in marked
    assert "✗" not in plain
    assert "┏" in marked  # heavy frame


def test_spans_carry_node_role_and_mark(blocked) -> None:  # type: ignore[no-untyped-def]
    drawing = draw(blocked, 110, marks={"isp": Mark.FAIL})
    spans = [span for row in drawing.rows for span in row]
    isp = [span for span in spans if span.node == "isp"]
    assert isp
    assert all(span.mark is Mark.FAIL for span in isp)
    blocked_port = [span for span in spans if span.role is Role.BLOCK]
    assert any("25 drop" in span.text for span in blocked_port)
    assert all(span.mark is None for span in spans if span.node == "relay")


def test_client_settings_override(blocked) -> None:  # type: ignore[no-untyped-def]
    fixed = blocked.expect.fix.apply(blocked.client[1].settings)
    text = draw(blocked, 60, client=fixed).text()
    assert "→ mail.example.com:587 starttls" in text
    assert "auth as alice@example.com" in text


def test_two_customer_networks(blocked) -> None:  # type: ignore[no-untyped-def]
    text = draw(load("relay-denied"), 120).text()
    for name in ("office", "home", "internet", "office-gw", "home-isp", "laptop"):
        assert name in text


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("abc", 5, "abc"),
        ("abcdef", 5, "abcd…"),
        ("abc", 0, ""),
    ],
)
def test_fit(text: str, width: int, expected: str) -> None:
    assert fit(text, width) == expected
