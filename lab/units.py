"""Durations, sizes and rates as people write them in scenario files ("15m", "10MB", "64kbit")."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
# Sanity bounds: beyond them a value is a typo (or an attack), not a setting.
MAX_DURATION = 366 * 86400.0
MAX_SIZE = 1024**4
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as "500ms", "3s", "15m", "2h", "5d"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 3s, 15m or 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration such as 3s, 15m or 2h, not {value!r}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION:
        raise ValueError(f"a duration is at most {format_duration(MAX_DURATION)}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from a number or a string such as "512", "10KB", "25MB"."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512, 10KB or 25MB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        number = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
        size = int(number) if math.isfinite(number) else MAX_SIZE + 1
    else:
        raise ValueError(f"expected a size such as 512, 10KB or 25MB, not {value!r}")
    if size < 0:
        raise ValueError("a size cannot be negative")
    if size > MAX_SIZE:
        raise ValueError("a size is at most 1TiB")
    return size


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)\s*$", re.IGNORECASE)
_RATE_UNITS = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3}


def parse_rate(value: object) -> int:
    """Bits per second from a string in tc's words: "64kbit", "2mbit", "1gbit"."""
    if isinstance(value, str) and (match := _RATE.match(value)):
        rate = int(float(match.group(1)) * _RATE_UNITS[match.group(2).lower()])
        if rate <= 0:
            raise ValueError("a bandwidth must be more than 0 bit/s")
        return rate
    raise ValueError(f"expected a bandwidth such as 64kbit or 2mbit, not {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest readable form of a duration: 0.25 -> "250ms", 5400 -> "1.5h"."""
    for unit, factor in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= factor:
            return f"{seconds / factor:g}{unit}"
    return f"{seconds * 1000:.0f}ms"


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Rate = Annotated[int, BeforeValidator(parse_rate)]
