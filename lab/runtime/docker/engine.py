"""Small helpers for talking to the Docker engine: parallel calls and short error text."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable


def in_parallel(calls: list[Callable[[], object]]) -> None:
    """Run engine calls in threads (the engine serves them concurrently); re-raise the first
    error once all have finished, so that nothing is left half-made unnoticed."""
    if not calls:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(calls))) as pool:
        futures = [pool.submit(call) for call in calls]
        concurrent.futures.wait(futures)
    for future in futures:
        future.result()


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message (engine errors run long), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
