"""Small helpers for talking to the Docker engine: a thread pool for blocking engine work,
parallel calls, and short error text."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

# Labs being brought up or taken down at once, per process. Each one blocks a thread for
# its whole `up` (engine calls, readiness): the default executor (CPUs + 4 threads) would
# queue a class of thirty labs behind a handful; this pool is sized for a class. Engine
# calls a lab makes in parallel run in `in_parallel`'s own threads, never here, so a full
# pool cannot wait on itself.
LAB_THREADS = 64
ENGINE_POOL = concurrent.futures.ThreadPoolExecutor(
    max_workers=LAB_THREADS, thread_name_prefix="smtplab-engine"
)

# Labs of this process creating, starting and waiting for their containers at once. Starting
# a lab is work for the engine (a fraction of a CPU second per container) and for the node
# programs (as much again each, to import); thirty labs started together on two cores all
# crawl and time out, where a few at a time finish one after another at the same total.
STARTING_LABS = max(2, os.cpu_count() or 2)
STARTING = threading.BoundedSemaphore(STARTING_LABS)


async def off_loop(call: Callable[[], _T]) -> _T:
    """`call()` in `ENGINE_POOL`, awaited without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(ENGINE_POOL, call)


def in_parallel(calls: list[Callable[[], object]]) -> None:
    """Run engine calls in threads (the engine serves them concurrently); re-raise the first
    error once all have finished, so that nothing is left half-made unnoticed."""
    if not calls:
        return
    if len(calls) == 1:
        calls[0]()
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
