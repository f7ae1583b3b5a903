"""Nothing lost across a crash: the relay is killed with SIGKILL mid-run and restarted.

CI size (200 messages, fixed seed); `benchmarks/relay_crash.py` runs 2,000. The
relay's queue is on disk and the restarted relay resumes it; the MX holds each
Message-ID once: none of the acknowledged messages lost, none delivered twice
(the redelivery of a message whose 250 came back just before the kill is
acknowledged by the MX without a second copy).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lab.nodes.mailserver.once import MessageIdIndex
from lab.nodes.mailserver.store import MailStore
from tests.nodes.relay_crash import RECIPIENT, crash_run

MESSAGE = b"Message-ID: <m1@x>\r\nSubject: once\r\n\r\nHello.\r\n"


async def test_kill_9_of_the_relay_loses_nothing_and_delivers_nothing_twice(
    tmp_path: Path,
) -> None:
    run = await crash_run(tmp_path, count=200, seed=12)
    assert run.refused == []
    assert run.acknowledged == 200
    # The first kill found the deferred mail waiting (the MX was down) ...
    assert run.queued_at_kill[0] >= 40
    # ... and each restarted relay took up what was on disk.
    assert run.resumed == sum(run.queued_at_kill)
    assert run.lost == []
    assert run.twice == []
    assert sum(run.delivered.values()) == 200


async def test_the_store_keeps_one_copy_per_message_id(tmp_path: Path) -> None:
    store = MailStore(tmp_path)
    first = await store.deliver_once(RECIPIENT, MESSAGE, "<m1@x>")
    # A redelivery, and two copies of another message arriving at the same time.
    again = await store.deliver_once(RECIPIENT, MESSAGE, "<m1@x>")
    both = await asyncio.gather(
        store.deliver_once(RECIPIENT, MESSAGE, "<m2@x>"),
        store.deliver_once(RECIPIENT, MESSAGE, "<m2@x>"),
    )
    assert first[1] is True
    assert again == (first[0], False)
    assert sorted(new for _, new in both) == [False, True]
    assert len({stored for stored, _ in both}) == 1
    # A store started afresh (the MX restarted) knows what is already on disk.
    restarted = MailStore(tmp_path)
    assert await restarted.deliver_once(RECIPIENT, MESSAGE, "<m1@x>") == (first[0], False)
    assert len(restarted.messages(RECIPIENT)) == 2


async def test_a_failed_first_copy_lets_the_duplicate_store_its_own(tmp_path: Path) -> None:
    index = MessageIdIndex()
    first_write = asyncio.get_running_loop().create_future()

    async def failing() -> str:
        await first_write
        raise OSError("disk full")

    async def working() -> str:
        return "stored-2"

    first = asyncio.create_task(index.deliver_once(tmp_path, "<m1@x>", failing))
    await asyncio.sleep(0)
    duplicate = asyncio.create_task(index.deliver_once(tmp_path, "<m1@x>", working))
    await asyncio.sleep(0.01)
    first_write.set_result(None)
    with pytest.raises(OSError, match="disk full"):
        await first
    assert await duplicate == ("stored-2", True)


async def test_a_sender_hanging_up_mid_write_still_counts_as_stored(tmp_path: Path) -> None:
    """The MX finishes a message whose client vanished (the relay was killed after the
    dot): the redelivery after the relay's restart must find it."""
    index = MessageIdIndex()
    disk = asyncio.get_running_loop().create_future()
    writing = asyncio.Event()

    async def slow_write() -> str:
        writing.set()
        await disk
        return "stored-1"

    async def second_write() -> str:
        raise AssertionError("a second copy was written")

    first = asyncio.create_task(index.deliver_once(tmp_path, "<m1@x>", slow_write))
    await writing.wait()
    first.cancel()  # the SMTP session went away
    with pytest.raises(asyncio.CancelledError):
        await first
    disk.set_result(None)
    assert await index.deliver_once(tmp_path, "<m1@x>", second_write) == ("stored-1", False)
