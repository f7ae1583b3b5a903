"""The session caps of a mail server whose sessions are spread over several worker processes.

With `workers` > 1 (`workers.py`) every worker accepts on the same port, so
a cap counted per process would grant the node N times its configured
share. `SharedSessionGate` keeps the counts of `limits.SessionGate` (open
sessions overall, and per client address) in one anonymous shared memory
map, created before the workers are forked and guarded by one process-
shared lock: the caps hold for the node as a whole, exactly.

Per-client counts live in an open-addressing table of 64-bit address
hashes (linear probing, backward-shift deletion). It never fills: a client
is counted only while it holds an admitted session, so there are at most
`capacity` of them, and the table has twice as many slots.
"""

from __future__ import annotations

import hashlib
import mmap
import multiprocessing
import struct

from lab.nodes.mailserver.limits import SessionGate

_HEADER = struct.Struct("=q")  # sessions open overall
_SLOT = struct.Struct("=Qq")  # address hash (0: empty), sessions of that client
_MIN_SLOTS = 64


class SharedSessionGate(SessionGate):
    """`SessionGate` whose counts every forked worker shares (create it before forking).

    Args:
        connections: the configured cap on open sessions, for the whole node.
        per_client: the configured cap per client address, for the whole node.
        fd_limit: one process's soft descriptor limit; lowers `capacity` if needed.
    """

    def __init__(self, connections: int, per_client: int, fd_limit: int) -> None:
        super().__init__(connections, per_client, fd_limit)
        slots = _MIN_SLOTS
        while slots < 2 * self.capacity:
            slots *= 2
        self._mask = slots - 1
        # An anonymous map is MAP_SHARED: a forked worker sees the parent's pages.
        self._memory = mmap.mmap(-1, _HEADER.size + slots * _SLOT.size)
        self._lock = multiprocessing.get_context("fork").Lock()

    @property
    def open(self) -> int:
        """Sessions admitted and not yet released, in every worker."""
        with self._lock:
            return int(_HEADER.unpack_from(self._memory, 0)[0])

    def open_session(self) -> bool:
        """Count a new connection; False (nothing counted) when the node is full."""
        with self._lock:
            (count,) = _HEADER.unpack_from(self._memory, 0)
            if count >= self.capacity:
                return False
            _HEADER.pack_into(self._memory, 0, count + 1)
            return True

    def close_session(self) -> None:
        """Forget a connection `open_session` counted."""
        with self._lock:
            (count,) = _HEADER.unpack_from(self._memory, 0)
            _HEADER.pack_into(self._memory, 0, count - 1)

    def admit_client(self, client: str) -> bool:
        """Count a session of `client`; False (nothing counted) when it has its share."""
        key = _key(client)
        with self._lock:
            index = self._find(key)
            _, count = self._slot(index)
            if count >= self.per_client:
                return False
            self._put(index, key, count + 1)
            return True

    def release_client(self, client: str) -> None:
        """Forget a session `admit_client` counted."""
        key = _key(client)
        with self._lock:
            index = self._find(key)
            stored, count = self._slot(index)
            if stored != key:
                return  # never admitted: nothing to forget
            if count > 1:
                self._put(index, key, count - 1)
            else:
                self._delete(index)

    def _slot(self, index: int) -> tuple[int, int]:
        key, count = _SLOT.unpack_from(self._memory, _HEADER.size + index * _SLOT.size)
        return int(key), int(count)

    def _put(self, index: int, key: int, count: int) -> None:
        _SLOT.pack_into(self._memory, _HEADER.size + index * _SLOT.size, key, count)

    def _find(self, key: int) -> int:
        """The slot holding `key`, or the empty slot where it would go."""
        index = key & self._mask
        while True:
            stored, _ = self._slot(index)
            if stored in (0, key):
                return index
            index = (index + 1) & self._mask

    def _delete(self, hole: int) -> None:
        """Empty slot `hole`, moving later entries of its probe run back (no tombstones)."""
        index = hole
        while True:
            index = (index + 1) & self._mask
            stored, count = self._slot(index)
            if stored == 0:
                break
            home = stored & self._mask
            # An entry may fill the hole unless its home lies cyclically in (hole, index].
            if (hole < index and hole < home <= index) or (
                hole > index and (home > hole or home <= index)
            ):
                continue
            self._put(hole, stored, count)
            hole = index
        self._put(hole, 0, 0)


def _key(client: str) -> int:
    """A nonzero 64-bit hash of a client address (0 marks an empty slot)."""
    digest = hashlib.blake2b(client.encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1
