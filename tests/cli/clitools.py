"""Running the real command line from tests (imported by the tests in this folder)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, check: int | None = 0, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``run_pipeline.py -q ARGS``; assert its exit code unless ``check`` is None."""
    p = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "-q", *args], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p
