"""Killing an extraction (SIGKILL, several times) loses no stored row and corrupts nothing;
a rerun ends identical to an uninterrupted run. Real subprocesses, real command line."""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from data.demo import make_demo_corpus

ROOT = Path(__file__).resolve().parents[2]


def _cmd(corpus: Path, workdir: Path, *extra: str, spec: str = "opensmile:eGeMAPSv02") -> list[str]:
    return [sys.executable, str(ROOT / "run_pipeline.py"), "-q", "extract", "--corpus", str(corpus),
            "--layout", "avb", "--workdir", str(workdir), "--features", spec,
            "--workers", "1", "--flush-rows", "3", "--no-progress", "--batch-seconds", "8", *extra]


def _parts(workdir: Path) -> int:
    return len(list(workdir.glob("features.journal/*/part-*.h5")))


def _snapshot(workdir: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    (path,) = (workdir / "features").glob("*.h5")  # the set's own file
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "corpus"
    make_demo_corpus(root, n_clips=60, seed=5)
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    from extract.untrained import make_untrained_wav2vec2

    return str(make_untrained_wav2vec2(tmp_path_factory.mktemp("m") / "tiny", size="small"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["opensmile", "ssl"])
def test_sigkill_several_times_then_rerun_is_identical(tmp_path, corpus, kind, request):
    spec = "opensmile:eGeMAPSv02" if kind == "opensmile" else f"ssl:{request.getfixturevalue('tiny_model')}"
    cmd = functools.partial(_cmd, spec=spec)
    ref = tmp_path / "ref"
    subprocess.run(cmd(corpus, ref), check=True, cwd=ROOT)
    wd = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    for attempt in range(6):
        proc = subprocess.Popen(cmd(corpus, wd), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = _parts(wd) + 2
        deadline = time.monotonic() + 60
        while proc.poll() is None and _parts(wd) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05 * attempt)  # vary the moment: sometimes mid-part, sometimes mid-compute
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        # after every kill the store can be read and verify finds no damage
        listing = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "-q", "verify",
                                  "--workdir", str(wd), "--no-hash-check"],
                                 cwd=ROOT, capture_output=True, text=True)
        assert "cannot be opened" not in listing.stdout and "damaged" not in listing.stdout, listing.stdout
        if proc.returncode == 0:
            break
    assert kills >= 2, "the extraction finished before it could be killed twice"
    done = subprocess.run(cmd(corpus, wd), cwd=ROOT)
    assert done.returncode == 0
    a, b = _snapshot(ref), _snapshot(wd)
    assert len(a["ids"]) == 60 and sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    ok = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "verify", "--workdir", str(wd)],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_sigterm_flushes_finished_rows_and_exits_cleanly(tmp_path, corpus):
    wd = tmp_path / "term"
    proc = subprocess.Popen(_cmd(corpus, wd), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and _parts(wd) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("finished before SIGTERM arrived")
    assert proc.returncode == 130, err
    assert "rerun the same command" in err
    assert not list(wd.glob("features.journal/*/.*.tmp"))
    done = subprocess.run(_cmd(corpus, wd), cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "reused" in done.stdout
