"""`lab.replies` checks itself, as aiosmtpd's statuscodes are checked by its QA suite:
the name carries the code, and the enhanced code's class agrees with the basic code."""

from __future__ import annotations

import re
import string

import pytest

from lab import replies
from lab.replies import Reply

NAMED = {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}
NAME = re.compile(r"^S(?P<code>[2-5]\d\d)_[A-Z0-9_]+$")
ENHANCED = re.compile(r"^(?P<class>[245])\.\d{1,3}\.\d{1,3}$")


def test_there_are_replies() -> None:
    assert len(NAMED) > 20


@pytest.mark.parametrize("name", sorted(NAMED))
def test_name_carries_the_code(name: str) -> None:
    match = NAME.match(name)
    assert match is not None, f"{name}: expected S<code>_<WHAT>"
    assert int(match["code"]) == NAMED[name].code


@pytest.mark.parametrize("name", sorted(NAMED))
def test_enhanced_class_matches_the_code(name: str) -> None:
    reply = NAMED[name]
    if not reply.enhanced:
        return
    match = ENHANCED.match(reply.enhanced)
    assert match is not None, f"{name}: {reply.enhanced!r} is not an RFC 3463 code"
    assert int(match["class"]) == reply.code // 100


@pytest.mark.parametrize("name", sorted(NAMED))
def test_renders_one_line_with_every_placeholder_filled(name: str) -> None:
    reply = NAMED[name]
    fields = {field for _, field, _, _ in string.Formatter().parse(reply.text) if field}
    line = reply(**dict.fromkeys(fields, "x"))
    assert line.startswith(f"{reply.code} ")
    assert "\r" not in line
    assert "\n" not in line
    assert "{" not in line


def test_values_are_unique() -> None:
    rendered = [(reply.code, reply.enhanced, reply.text) for reply in NAMED.values()]
    assert len(rendered) == len(set(rendered))
