"""Files that appear whole or not at all: atomic text and HDF5 writes (temporary name, fsync,
rename), the space claimed before HDF5 writes, read-only opening, removal helpers."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import h5py

from extract.store.schema import SCHEMA_VERSION


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (ignored where the file system cannot)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` under a temporary name, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def reserve_space(folder: Path, nbytes: int) -> None:
    """Make sure ``nbytes`` can be written in ``folder`` before HDF5 writes anything.

    HDF5 cannot recover from a write that fails for lack of space: the library is left with
    ids it can no longer close and the process crashes when it exits. So space is claimed
    first (``posix_fallocate`` of a reservation file, released right before the write) and a
    full disk is reported here as a plain ``OSError(ENOSPC)``.

    Raises:
        OSError: ``errno.ENOSPC`` when the space is not there.
    """
    if nbytes <= 0 or not hasattr(os, "posix_fallocate"):
        return
    res = folder / f".reserve.{uuid.uuid4().hex[:8]}.tmp"
    with signals_deferred():  # a Ctrl-C / SIGTERM cannot leave the reservation file behind
        fd = os.open(res, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # file system cannot tell
                return
            free = shutil.disk_usage(folder).free
            raise OSError(errno.ENOSPC, f"No space left on device: writing {folder} needs about "
                                        f"{nbytes / 1e6:.1f} MB, {free / 1e6:.1f} MB free") from None
        finally:
            os.close(fd)
            res.unlink(missing_ok=True)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is left, then their handlers run.

    The command line turns these signals into ``KeyboardInterrupt``, which can land between
    any two statements; a short block that creates and removes a file must not be cut there.
    Where signals cannot be masked (not POSIX), the block runs as it is.
    """
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, OSError, ValueError):
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def atomic_h5(path: Path, *, reserve: int = 0) -> Iterator[h5py.File]:
    """An HDF5 file that appears at ``path`` complete or not at all.

    Written under a temporary name in the same folder, flushed to disk, then renamed; on any
    error (disk full, Ctrl-C) the temporary file is removed and ``path`` is untouched.

    Args:
        path: the final name.
        reserve: bytes the file will need at most; claimed first (:func:`reserve_space`) so
            that a full disk fails before HDF5 writes.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    reserve_space(path.parent, reserve)
    f: h5py.File | None = None
    try:
        f = h5py.File(tmp, "w", libver="latest")
        f.attrs["schema_version"] = SCHEMA_VERSION
        yield f
        f.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _abandon(f, tmp)
        raise
    fsync_dir(path.parent)


def _abandon(f: h5py.File | None, tmp: Path) -> None:
    """Close and delete a temporary HDF5 file after a failed write.

    On a full disk HDF5 cannot write the metadata it flushes when a file closes; an id left
    open then makes the library crash when the interpreter exits (segfault). Truncating the
    file first gives the space back (also while HDF5 holds it open), so the close succeeds.
    """
    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    if f is not None:
        for _ in range(2):
            try:
                if f.id.valid:
                    f.close()
                break
            except Exception:  # noqa: BLE001, S112  # a close that fails once is retried once
                continue
    tmp.unlink(missing_ok=True)


def open_read(path: Path) -> h5py.File:
    """Open an HDF5 file for reading without HDF5's file locking (readers never block)."""
    return h5py.File(path, "r", locking=False)


def file_size(p: Path) -> int:
    """Bytes of ``p`` (0 when it is gone)."""
    try:
        return p.stat().st_size
    except OSError:
        return 0


def remove_empty_dir(d: Path) -> None:
    """Remove ``d`` when it is an empty folder; leave it otherwise."""
    try:
        d.rmdir()
    except OSError:
        pass


def temporary_files_in(folders: list[Path]) -> list[Path]:
    """Temporary files (``*.tmp``) in ``folders`` (those that exist), sorted."""
    out: list[Path] = []
    for d in folders:
        if d.is_dir():
            out += [p for p in d.iterdir() if p.name.endswith(".tmp")]
    return sorted(out)
