"""Advisory file locks (POSIX flock) between processes that share a folder: a sweep cell run by two
processes at once, a checkpoint replaced while another process lists the folder.

The lock is held by an open file descriptor, so the kernel releases it when the process dies: a
killed run never leaves a folder locked.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class LockHeld(RuntimeError):
    """Another live process holds the lock; `holder` is its pid as it wrote it (or "?")."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked by process {holder}")
        self.path, self.holder = path, holder


@contextmanager
def file_lock(path: Path | str, wait: bool = True) -> Iterator[Path]:
    """Hold an exclusive lock on `path` (created if missing). With `wait=False`, raise LockHeld at once
    when another process has it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise LockHeld(path, _holder(fd)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    except OSError:
        return "?"
