"""Running the real command line from tests (imported by the tests in this folder)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, check: int | None = 0, env: dict | None = None,
        quiet: bool = True) -> subprocess.CompletedProcess:
    """Run ``run_pipeline.py -q ARGS`` (without ``-q`` when ``quiet`` is false: INFO lines on
    stderr, as a user sees them); assert its exit code unless ``check`` is None."""
    p = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), *(["-q"] if quiet else []),
                        *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def cli_in_terminal(*args: str, env: dict | None = None, cols: int = 120,
                    timeout: float = 600) -> tuple[int, str, str]:
    """Run ``run_pipeline.py ARGS`` with stderr on a pseudo-terminal of ``cols`` columns (as a
    user at a terminal sees it: progress bars drawn); returns (exit code, stdout, raw stderr)."""
    import fcntl
    import os
    import pty
    import struct
    import tempfile
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), *args], cwd=ROOT,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=slave, env=env)
        os.close(slave)
        chunks, t0 = [], time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        rc = p.wait(timeout=60)
        out.seek(0)
        stdout = out.read()
    return rc, stdout, b"".join(chunks).decode("utf-8", "replace")


def terminal_lines(raw: str) -> list[str]:
    """What a terminal shows for ``raw`` output, line by line: a carriage return moves back to
    the line's start and later characters overwrite earlier ones; escape sequences (tqdm's
    cursor moves) are dropped."""
    import re

    raw = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw).replace("\r\n", "\n")
    lines = []
    for text in raw.split("\n"):
        screen: list[str] = []
        col = 0
        for ch in text:
            if ch == "\r":
                col = 0
                continue
            if col < len(screen):
                screen[col] = ch
            else:
                screen.append(ch)
            col += 1
        lines.append("".join(screen).rstrip())
    return lines
