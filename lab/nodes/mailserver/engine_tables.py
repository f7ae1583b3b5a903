"""aiosmtpd's per-connection method tables, built once per class instead of per connection.

aiosmtpd 1.4 builds each session's tables of commands, hooks and AUTH
mechanisms in `SMTP.__init__` by introspection: `dir()` and
`inspect.getmembers()` of the session and of its handler, and the EHLO
hook's signature. That is about a millisecond per connection, as much as
the rest of a message's work. The tables depend only on the classes, so
`install` gives the `aiosmtpd.smtp` module (only it) versions of those
three functions that remember the names per class; values are still read
from the object itself, so every session gets its own bound methods.
`tests/nodes/test_engine_tables.py` checks the tables come out the same.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import aiosmtpd.smtp


@functools.cache
def _class_names(cls: type) -> tuple[str, ...]:
    return tuple(dir(cls))


@functools.cache
def _class_auth_names(cls: type) -> tuple[str, ...]:
    return tuple(name for name in _class_names(cls) if name.startswith("auth_"))


def cached_dir(obj: Any) -> list[str]:
    """`dir(obj)`, the class's part computed once per class (the callers need no order)."""
    instance = getattr(obj, "__dict__", None)
    if instance is None or isinstance(obj, type):
        return dir(obj)
    cls: type = type(obj)
    names = _class_names(cls)
    known = set(names)
    return [*names, *(name for name in instance if name not in known)]


def auth_members(obj: Any) -> list[tuple[str, Any]]:
    """`inspect.getmembers(obj)` narrowed to the `auth_*` names, sorted.

    aiosmtpd 1.4 (pinned below 1.5) calls getmembers once, to collect AUTH
    mechanisms, and keeps only those names: reading every other attribute
    (properties included) is what made it slow.
    """
    instance = getattr(obj, "__dict__", {})
    cls: type = type(obj)
    names = {*_class_auth_names(cls), *(n for n in instance if n.startswith("auth_"))}
    members = []
    for name in sorted(names):
        try:
            members.append((name, getattr(obj, name)))
        except AttributeError:
            continue
    return members


@functools.cache
def _function_signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


def cached_signature(obj: Callable[..., Any]) -> inspect.Signature:
    """`inspect.signature` of a bound method, computed once per underlying function."""
    function = getattr(obj, "__func__", None)
    if function is None:
        return inspect.signature(obj)
    # The bound method's signature: the function's without its first parameter.
    parameters = list(_function_signature(function).parameters.values())[1:]
    return _function_signature(function).replace(parameters=parameters)


def install() -> None:
    """Make `aiosmtpd.smtp` use the cached versions; idempotent."""
    module: Any = aiosmtpd.smtp
    module.dir = cached_dir
    module.inspect = SimpleNamespace(getmembers=auth_members, signature=cached_signature)
