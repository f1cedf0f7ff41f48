"""Damaged stores, verify --repair, a full disk, and concurrent commands on one workdir."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data.demo import make_demo_corpus

from clitools import ROOT, cli




def extract_args(corpus: Path, wd: Path, *extra: str) -> list[str]:
    return ["extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd),
            "--features", "opensmile:eGeMAPSv02", "--workers", "1", "--no-progress", *extra]


@pytest.fixture()
def corpus(tmp_path) -> Path:
    root = tmp_path / "corpus"
    make_demo_corpus(root, n_clips=24, seed=4)
    return root


def _export(wd: Path, out: Path) -> dict[str, np.ndarray]:
    cli("export", "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02", "--out", str(out))
    z = np.load(out)
    return dict(zip(z["ids"], z["X"]))


def test_truncated_store_is_detected_and_repaired(tmp_path, corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd))
    good = _export(wd, tmp_path / "a.npz")
    (path,) = (wd / "features").glob("*.h5")  # the set's own file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    v = cli("verify", "--workdir", str(wd), check=3)
    assert "cannot be opened by HDF5" in v.stdout and "--repair" in v.stdout
    r = cli("verify", "--workdir", str(wd), "--repair", check=0)
    assert "moved aside" in r.stdout and "recomputed 24 row(s)" in r.stdout
    assert list(wd.glob("features/*.h5.damaged-*"))
    again = _export(wd, tmp_path / "b.npz")
    assert sorted(again) == sorted(good)
    for k in good:
        np.testing.assert_array_equal(good[k], again[k])


def test_missing_rows_and_changed_audio_are_found_and_repaired_without_touching_good_rows(tmp_path, corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd))
    # a clip added to the corpus after extraction: a missing row
    wavs = sorted((corpus / "audio" / "wav").glob("*.wav"))
    x, sr = sf.read(wavs[0])
    sf.write(corpus / "audio" / "wav" / "99999.wav", x[: len(x) // 2], sr)
    # a clip whose audio changed on disk: a hash mismatch
    y, sr2 = sf.read(wavs[1])
    sf.write(wavs[1], y[::-1].copy(), sr2)
    before = _export(wd, tmp_path / "a.npz")
    v = cli("verify", "--workdir", str(wd), check=3)
    assert "1 missing: 99999" in v.stdout
    assert "stale" in v.stdout and wavs[1].stem in v.stdout
    r = cli("verify", "--workdir", str(wd), "--repair", check=0)
    assert "recomputed 2 row(s)" in r.stdout
    after = _export(wd, tmp_path / "b.npz")
    assert "99999" in after and not np.array_equal(after[wavs[1].stem], before[wavs[1].stem])
    for k in before:
        if k != wavs[1].stem:
            np.testing.assert_array_equal(before[k], after[k])


def test_damaged_journal_part_is_moved_aside_and_recomputed(tmp_path, corpus):
    wd = tmp_path / "wd"
    ids = sorted(p.stem for p in (corpus / "audio" / "wav").glob("*.wav"))
    cli(*extract_args(corpus, wd))
    # make a journal part (as an interrupted compaction would leave) and damage it
    from extract.store import FeatureStore

    store = FeatureStore(wd)
    (h,) = store.headers().values()
    with store.writer(h) as w:
        w.add("extra", "h", {"functionals": np.ones(88, np.float32)})
    (part,) = list(wd.glob("features.journal/*/part-*.h5"))
    part.write_bytes(b"\x89HDF garbage")
    v = cli("verify", "--workdir", str(wd), check=3)
    assert "damaged" in v.stdout
    cli("verify", "--workdir", str(wd), "--repair", check=0)
    assert list(wd.glob("features.journal/*/damaged-part-*.h5"))
    assert sorted(_export(wd, tmp_path / "c.npz")) == ids


def _mount_small_fs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    return p.returncode == 0


@pytest.mark.slow
def test_disk_full_keeps_store_readable_and_rerun_completes(tmp_path):
    mnt = tmp_path / "small"
    if not _mount_small_fs(mnt, "2m"):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root)")
    try:
        corpus = tmp_path / "corpus"
        make_demo_corpus(corpus, n_clips=60, seed=9)
        wd = mnt / "wd"
        args = ["extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd),
                "--features", "opensmile:ComParE_2016", "--workers", "1", "--flush-rows", "4",
                "--no-progress"]
        p = cli(*args, check=None)
        assert p.returncode != 0 and "disk full" in p.stderr and "rerun" in p.stderr, p.stderr
        v = cli("verify", "--workdir", str(wd), "--no-hash-check", check=None)
        assert "cannot be opened" not in v.stdout and "damaged" not in v.stdout
        stored_before = int(v.stdout.split("rows")[0].split(":")[-1]) if "rows" in v.stdout else 0
        assert stored_before > 0  # what was flushed before the disk filled is kept
        # free space: move the workdir to a roomy disk and rerun the same command there
        roomy = tmp_path / "wd"
        shutil.copytree(wd, roomy)
        args[args.index("--workdir") + 1] = str(roomy)
        done = cli(*args)
        assert f"{stored_before} reused" in done.stdout
        cli("verify", "--workdir", str(roomy))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_second_extract_is_refused_and_readers_work_meanwhile(tmp_path, corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd))  # a finished set to read
    slow = subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), "-q", "extract",
                             "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd),
                             "--features", "opensmile:ComParE_2016", "--workers", "1",
                             "--flush-rows", "2", "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(wd.glob("features.journal/*/part-*.h5")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slow.poll() is None, "the writer finished too early to test concurrency"
        os.kill(slow.pid, signal.SIGSTOP)  # hold the writer mid-extraction, whatever the speed
        p = cli(*extract_args(corpus, wd), check=2)
        assert f"pid {slow.pid}" in p.stderr and "being written" in p.stderr
        # readers: list, export and train work while the other set is being written
        cli("list", "--workdir", str(wd))
        assert len(_export(wd, tmp_path / "r.npz")) == 24
        cli("train", "--workdir", str(wd), "--task", "avb-high", "--features",
            "opensmile:eGeMAPSv02", "--head", "ridge", "--run-name", "during", "--n-boot", "20")
    finally:
        os.kill(slow.pid, signal.SIGCONT)
        out, err = slow.communicate(timeout=300)
    assert slow.returncode == 0, err
