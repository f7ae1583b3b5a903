"""How a stage asks: the generator type of the walk, and the check on each answer.

A stage that needs the runners is a generator: each `yield` hands a request
(`lab.diagnosis.requests`) out and receives its result; its return value says
whether the walk goes on. `expect` turns a result of the wrong kind into a
`TypeError` (a bug in the loop, never a finding), and `polite` decides whether
the session ends with QUIT.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeAlias, TypeVar

from lab.diagnosis.requests import Request, Result, SessionResult

_T = TypeVar("_T")
_R = TypeVar("_R")

# A stage that asks: yields requests, receives results, returns what the sequence needs next.
Asking: TypeAlias = Generator[Request, Result, _T]


def expect(result: object, kind: type[_R]) -> _R:
    """`result`, checked to be the kind of result that was asked for."""
    if not isinstance(result, kind):
        raise TypeError(f"expected a {kind.__name__}, got {type(result).__name__}")
    return result


def polite(result: SessionResult) -> bool:
    """QUIT makes sense when the conversation is intact and the server is not closing."""
    return result.failure is None and not (result.reply is not None and result.reply.code == 421)
