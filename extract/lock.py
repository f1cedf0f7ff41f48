"""One extraction writer per workdir.

``fcntl.flock`` on ``WORKDIR/extract.lock``: the kernel releases it when the holder dies, even
by ``kill -9``, so a stale lock never blocks a rerun. The file says who holds it (pid, host,
command, start time) so that a refused second extraction can name the running process.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

LOCK_FILE = "extract.lock"


class WorkdirBusy(RuntimeError):
    """Another extraction holds the workdir; the message names it."""


class WorkdirLock:
    """Context manager holding the workdir's extraction lock.

    Example:
        >>> import tempfile
        >>> with WorkdirLock(tempfile.mkdtemp()) as lock:
        ...     lock.held
        True
    """

    def __init__(self, workdir: str | os.PathLike, *, purpose: str = "extract") -> None:
        self.path = Path(workdir) / LOCK_FILE
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`WorkdirBusy` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(self.path)
            os.close(fd)
            who = (f"pid {holder.get('pid')} on {holder.get('host')} "
                   f"({holder.get('purpose')}, started {holder.get('started')}: "
                   f"{holder.get('command')})") if holder else "another process"
            raise WorkdirBusy(
                f"{self.path.parent} is being written by {who}. Wait for it to finish, or stop "
                f"it; two extractions never write one store at once. Use another --workdir (or "
                f"--shard) to run in parallel."
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def read_holder(path: str | os.PathLike) -> dict[str, Any]:
    """Who holds (or last held) a lock file; empty when unknown."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
