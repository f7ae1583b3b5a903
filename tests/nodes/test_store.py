"""The mailbox store: durable Maildir delivery, ordering, and names that cannot escape the root."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from lab.nodes.mailserver.store import MailStore, address_of, mailbox_dirname


class TestDurability:
    async def test_file_is_in_new_when_deliver_returns(self, tmp_path: Path) -> None:
        store = MailStore(tmp_path / "boxes")
        message_id = await store.deliver("alice@example.com", b"Subject: one\r\n\r\nbody\r\n")
        path = tmp_path / "boxes" / "alice@example.com" / "new" / message_id
        assert path.read_bytes() == b"Subject: one\r\n\r\nbody\r\n"
        assert list((tmp_path / "boxes" / "alice@example.com" / "tmp").iterdir()) == []

    async def test_files_are_private(self, tmp_path: Path) -> None:
        store = MailStore(tmp_path)
        await store.deliver("alice@example.com", b"x")
        (message,) = store.messages("alice@example.com")
        assert message.path.stat().st_mode & 0o077 == 0

    async def test_concurrent_deliveries_are_all_stored(self, tmp_path: Path) -> None:
        # Many at once form batches (group commit); every one must still land.
        store = MailStore(tmp_path)
        ids = await asyncio.gather(
            *(store.deliver(f"user{n % 3}@example.com", f"{n}".encode()) for n in range(60))
        )
        assert len(set(ids)) == 60
        stored = [m.data for box in store.mailboxes() for m in store.messages(box)]
        assert sorted(stored) == sorted(f"{n}".encode() for n in range(60))

    async def test_failed_write_raises_and_others_still_land(self, tmp_path: Path) -> None:
        store = MailStore(tmp_path)
        # A file where the mailbox directory should be: that delivery cannot succeed.
        (tmp_path / "blocked@example.com").write_text("not a directory")
        results = await asyncio.gather(
            store.deliver("blocked@example.com", b"lost"),
            store.deliver("alice@example.com", b"kept"),
            return_exceptions=True,
        )
        assert isinstance(results[0], OSError)
        assert [m.data for m in store.messages("alice@example.com")] == [b"kept"]

    async def test_close_waits_for_writes_in_flight(self, tmp_path: Path) -> None:
        store = MailStore(tmp_path)
        task = asyncio.ensure_future(store.deliver("alice@example.com", b"x"))
        await asyncio.sleep(0)
        await store.close()
        assert task.done()
        await task


class TestOrdering:
    async def test_oldest_first_in_delivery_order(self, tmp_path: Path) -> None:
        store = MailStore(tmp_path)
        for n in range(5):
            await store.deliver("alice@example.com", f"message {n}".encode())
        assert [m.data for m in store.messages("alice@example.com")] == [
            f"message {n}".encode() for n in range(5)
        ]

    async def test_order_kept_within_one_batch(self, tmp_path: Path) -> None:
        store = MailStore(tmp_path)
        await asyncio.gather(
            *(store.deliver("alice@example.com", f"{n:02d}".encode()) for n in range(20))
        )
        assert [m.data for m in store.messages("alice@example.com")] == [
            f"{n:02d}".encode() for n in range(20)
        ]

    async def test_messages_moved_to_cur_are_still_listed(self, tmp_path: Path) -> None:
        store = MailStore(tmp_path)
        first = await store.deliver("alice@example.com", b"first")
        await store.deliver("alice@example.com", b"second")
        box = tmp_path / "alice@example.com"
        os.rename(box / "new" / first, box / "cur" / f"{first}:2,S")
        messages = store.messages("alice@example.com")
        assert (messages[0].id, messages[0].data) == (first, b"first")
        assert [m.data for m in messages] == [b"first", b"second"]

    def test_unknown_mailbox_is_empty(self, tmp_path: Path) -> None:
        assert MailStore(tmp_path / "missing").messages("nobody@example.com") == []
        assert MailStore(tmp_path / "missing").mailboxes() == []


class TestNames:
    async def test_addresses_are_case_insensitive(self, tmp_path: Path) -> None:
        store = MailStore(tmp_path)
        await store.deliver("Alice@Example.COM", b"x")
        assert store.mailboxes() == ["alice@example.com"]
        assert len(store.messages("ALICE@example.com")) == 1

    @pytest.mark.parametrize(
        "address",
        [
            "../x",  # a parent directory
            "../../etc/passwd",
            "a/b@example.com",  # a subdirectory
            "..",
            ".",
            ".hidden@example.com",
            "nul\x00@example.com",
            "ünïcode@example.com",
            "100%@example.com",  # the escape character itself
        ],
    )
    async def test_traversal_safe_and_reversible(self, tmp_path: Path, address: str) -> None:
        root = tmp_path / "boxes"
        store = MailStore(root)
        await store.deliver(address, b"x")
        (entry,) = list(root.iterdir())
        assert entry.parent == root
        assert entry.name not in (".", "..")
        assert "/" not in entry.name
        assert store.mailboxes() == [address.lower()]
        assert [m.data for m in store.messages(address)] == [b"x"]
        assert list(tmp_path.iterdir()) == [root]

    def test_dirname_round_trip(self) -> None:
        for address in ("bob+tag@example.com", "../x", "%41", "a b@c"):
            assert address_of(mailbox_dirname(address)) == address

    def test_empty_address_has_no_mailbox(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            mailbox_dirname("")
