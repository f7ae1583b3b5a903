"""Server flavours: the lab's replies worded as Postfix, Exim, Exchange or Gmail word them.

The wording is data (`flavours.yaml`: flavour -> reply constant of `lab.replies`
-> text). `reword` takes a reply line a server is about to send, recognises which
of the lab's replies it is (each constant's text is a pattern whose placeholders
capture the values), and returns the flavour's text with the same values, code
and enhanced status code. A line no constant matches (EHLO, a 250) passes as is.
The file is validated on load: an unknown flavour or constant, or a placeholder
the lab's text does not fill, fails loudly.
"""

from __future__ import annotations

import functools
import re
import string
from importlib import resources

import yaml

from lab import replies
from lab.errors import LabError
from lab.replies import Reply
from lab.scenario.vocabulary import Flavour

FLAVOURS_FILE = "flavours.yaml"


class FlavourError(LabError):
    """The flavours file is invalid."""


def constants() -> dict[str, Reply]:
    """The lab's replies by constant name."""
    return {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _pattern(reply: Reply) -> re.Pattern[str]:
    """The reply line as a pattern: each `{placeholder}` a named group."""
    prefix = f"{reply.code} {reply.enhanced} " if reply.enhanced else f"{reply.code} "
    regex = re.escape(prefix)
    seen: set[str] = set()
    for literal, name, _, _ in string.Formatter().parse(reply.text):
        regex += re.escape(literal)
        if name:
            regex += f"(?P={name})" if name in seen else f"(?P<{name}>.*?)"
            seen.add(name)
    return re.compile(regex + r"\Z", re.DOTALL)


def parse_flavours(text: str, source: str = FLAVOURS_FILE) -> dict[Flavour, dict[str, str]]:
    """Validate the flavours table.

    Raises:
        FlavourError: one line per problem, naming the flavour and the constant.
    """
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise FlavourError(f"{source}: a mapping of flavours to reply texts")
    known = constants()
    problems: list[str] = []
    table: dict[Flavour, dict[str, str]] = {}
    for name, texts in data.items():
        try:
            flavour = Flavour(name)
        except ValueError:
            allowed = ", ".join(str(item) for item in Flavour)
            problems.append(f"{source}: {name}: not a flavour; known: {allowed}")
            continue
        table[flavour] = {}
        for constant, wording in (texts or {}).items():
            if constant not in known:
                problems.append(f"{source}: {name}.{constant}: not a reply of lab.replies")
                continue
            extra = _placeholders(str(wording)) - _placeholders(known[constant].text)
            if extra:
                problems.append(
                    f"{source}: {name}.{constant}: placeholder {sorted(extra)} "
                    f"is not in the lab's text {known[constant].text!r}"
                )
                continue
            table[flavour][constant] = str(wording)
    if problems:
        raise FlavourError("\n".join(problems))
    return table


@functools.cache
def load_flavours() -> dict[Flavour, dict[str, str]]:
    """The packaged table, validated once per process."""
    text = resources.files("lab").joinpath(FLAVOURS_FILE).read_text(encoding="utf-8")
    return parse_flavours(text)


@functools.cache
def _patterns() -> tuple[tuple[str, Reply, re.Pattern[str]], ...]:
    # Longest text first: a specific reply is tried before a shorter one it contains.
    found = [(name, reply, _pattern(reply)) for name, reply in constants().items()]
    return tuple(sorted(found, key=lambda item: -len(item[1].text)))


def reword(line: str, flavour: Flavour) -> str:
    """`line` as `flavour` words it: the same code, status code and values."""
    if flavour is Flavour.LAB:
        return line
    table = load_flavours().get(flavour, {})
    for name, reply, pattern in _patterns():
        if name not in table:
            continue
        match = pattern.match(line)
        if match is not None:
            flavoured = Reply(reply.code, reply.enhanced, table[name])
            return flavoured(**match.groupdict()) if match.groupdict() else flavoured()
    return line
