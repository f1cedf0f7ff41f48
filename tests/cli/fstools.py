"""Real small and read-only file systems for the fault tests (tmpfs mounts; need root)."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_fs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. ``"1m"``) at ``path``; skips the test without root."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("cannot mount a size-limited tmpfs here (needs root)")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path, leave: int = 0) -> Path:
    """Fill the file system of ``path`` until at most ``leave`` bytes are free."""
    filler = path / "filler.bin"
    with open(filler, "wb") as fh:
        block = b"\0" * 65536
        try:
            while shutil.disk_usage(path).free > leave + len(block):
                fh.write(block)
                fh.flush()
            while shutil.disk_usage(path).free > leave:
                fh.write(b"\0" * 512)
                fh.flush()
        except OSError:
            pass
    return filler


def read_only(path: Path) -> None:
    """Remount the tmpfs at ``path`` read-only (a real EROFS, which root cannot bypass)."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
