"""Files only their owner may read: passwords and private keys, 0600 from the first byte.

`Path.write_text` creates a file with the umask's mode (often 0644) and keeps
the mode of a file it overwrites, so a secret written that way is readable by
every local user. These helpers create the file 0600 and force that mode on a
file that already existed.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def write_private(path: Path, data: bytes | str, *, exclusive: bool = False) -> None:
    """Write `data` to `path`, readable and writable by its owner only.

    Args:
        exclusive: fail (FileExistsError) if `path` exists instead of replacing it.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    descriptor = os.open(path, flags, PRIVATE_MODE)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), PRIVATE_MODE)  # an existing file keeps its mode otherwise
        file.write(data.encode("utf-8") if isinstance(data, str) else data)


def private_directory(path: Path) -> Path:
    """`path` created if missing, searchable by its owner only."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)
    return path
