"""Issue 11, "data loss and crashes": each case through the real command line.

1 missing audio keeps stored rows; 2 merge refuses a running shard and deletes only what it
folded; 3 a refused extract writes nothing; 4 unreadable files while hashing are per-clip
failures; 5 a stop request during compaction ends the run; 6 a full disk during compaction
exits cleanly; 7 export is atomic; 8 known failures are messages, not tracebacks; 9 repair
says what it recovered and what not.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data.demo import make_demo_corpus

from clitools import ROOT, cli
from fstools import fill, read_only, small_fs

EGEMAPS = "opensmile:eGeMAPSv02"


def extract_args(corpus: Path, wd: Path, *extra: str, features: tuple[str, ...] = (EGEMAPS,)
                 ) -> list[str]:
    return ["extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd),
            "--features", *features, "--workers", "1", "--no-progress", *extra]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safety") / "corpus"
    make_demo_corpus(root, n_clips=12, seed=11)
    return root


@pytest.fixture()
def own_corpus(tmp_path, corpus) -> Path:
    """A copy the test may damage."""
    dst = tmp_path / "corpus"
    shutil.copytree(corpus, dst)
    return dst


def export(wd: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    cli("export", "--workdir", str(wd), "--features", EGEMAPS, "--out", str(out), *extra)
    z = np.load(out)
    return dict(zip(z["ids"], z["X"]))


def csv_layout(corpus: Path):
    """List every wav of a corpus in a csv-layout table; returns the extract-args builder."""
    import pandas as pd

    wavs = sorted((corpus / "audio" / "wav").glob("*.wav"))
    pd.DataFrame({"file": [f"audio/wav/{w.name}" for w in wavs],
                  "score": np.linspace(0, 1, len(wavs))}).to_csv(corpus / "list.csv", index=False)

    def args(corpus: Path, wd: Path) -> list[str]:
        return ["extract", "--corpus", str(corpus), "--layout", "csv", "--labels",
                str(corpus / "list.csv"), "--workdir", str(wd), "--features", EGEMAPS,
                "--workers", "1", "--no-progress"]
    return args


def no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr


# 1 ------------------------------------------------------------------------------------------
def test_missing_audio_on_rerun_keeps_the_stored_rows(tmp_path, own_corpus):
    """csv layout: a listed clip whose file is gone stays in the corpus (avb leaves it out)."""
    wd = tmp_path / "wd"
    wavs = sorted((own_corpus / "audio" / "wav").glob("*.wav"))
    extract_args = csv_layout(own_corpus)
    cli(*extract_args(own_corpus, wd))
    before = export(wd, tmp_path / "a.npz")
    gone = wavs[0]
    gone.rename(tmp_path / gone.name)
    p = cli(*extract_args(own_corpus, wd), check=3)
    assert "audio missing, stored row kept" in p.stdout and gone.stem in p.stdout
    assert "0 failed" in p.stdout
    v = cli("verify", "--workdir", str(wd), check=3)
    assert "1 audio missing (stored row kept" in v.stdout and "failed" not in v.stdout
    # a whole corpus unmounted: every row kept
    audio = own_corpus / "audio"
    audio.rename(tmp_path / "audio-away")
    p = cli(*extract_args(own_corpus, wd), check=3)
    assert f"{len(wavs)} audio missing (stored rows kept)" in p.stdout
    after = export(wd, tmp_path / "b.npz")
    assert sorted(after) == sorted(before)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    # audio back: nothing is recomputed
    (tmp_path / "audio-away").rename(audio)
    (tmp_path / gone.name).rename(gone)
    p = cli(*extract_args(own_corpus, wd))
    assert f"{len(wavs)} reused, 0 computed" in p.stdout
    cli("verify", "--workdir", str(wd))


# 2 ------------------------------------------------------------------------------------------
def test_merge_refuses_a_running_shard_and_never_deletes_unfolded_rows(tmp_path, corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd, "--shard", "0/2"))
    slow = subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), "-q",
                             *extract_args(corpus, wd, "--shard", "1/2", "--flush-rows", "1",
                                           features=("opensmile:ComParE_2016",))],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while (not list(wd.glob("shards/1-of-2/features.journal/*/part-*.h5"))
               and time.monotonic() < deadline and slow.poll() is None):
            time.sleep(0.02)
        assert slow.poll() is None, "the shard finished before the merge could race it"
        os.kill(slow.pid, signal.SIGSTOP)
        parts = sorted(wd.glob("shards/1-of-2/features.journal/*/part-*.h5"))
        p = cli("merge", "--workdir", str(wd), check=2)
        no_traceback(p)
        assert "1-of-2" in p.stderr and f"pid {slow.pid}" in p.stderr
        assert all(q.exists() for q in parts)  # nothing of the running shard was touched
    finally:
        os.kill(slow.pid, signal.SIGCONT)
        out, err = slow.communicate(timeout=300)
    assert slow.returncode == 0, err
    n_shard1 = int(out.split("shard 1/2: ")[1].split()[0])
    merged = cli("merge", "--workdir", str(wd)).stdout
    # every row the running shard went on to compute is there: none was deleted unfolded
    assert f"ComParE_2016-functionals-4fdc473aa9cd: merged 1 shard(s), {n_shard1} rows" in merged
    assert not (wd / "shards").exists()


# 3 ------------------------------------------------------------------------------------------
def test_a_refused_extract_writes_nothing(tmp_path, corpus):
    from extract.lock import WorkdirLock

    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd))
    before = {p.name: p.read_bytes() for p in wd.iterdir() if p.is_file() and p.name != "extract.lock"}
    elsewhere = tmp_path / "other"
    shutil.copytree(corpus, elsewhere)
    with WorkdirLock(wd):
        p = cli(*extract_args(elsewhere, wd), check=2)
    assert "being written" in p.stderr
    after = {p.name: p.read_bytes() for p in wd.iterdir() if p.is_file() and p.name != "extract.lock"}
    assert after == before
    assert json.loads((wd / "corpus.json").read_text())["root"] == str(corpus.resolve())


# 4 ------------------------------------------------------------------------------------------
def test_a_folder_named_like_a_wav_is_one_failed_clip(tmp_path, own_corpus):
    wd = tmp_path / "wd"
    extract_args = csv_layout(own_corpus)
    wav = sorted((own_corpus / "audio" / "wav").glob("*.wav"))[3]
    wav.unlink()
    wav.mkdir()
    p = cli(*extract_args(own_corpus, wd), check=3)
    no_traceback(p)
    assert wav.stem in p.stdout and "11 computed, 1 failed" in p.stdout
    v = cli("verify", "--workdir", str(wd), check=3)
    assert "1 failed" in v.stdout and wav.stem in v.stdout


# 5 ------------------------------------------------------------------------------------------
_SWALLOW = """
import os, signal, sys
import extract.store as st
real = st.FeatureStore.compact
def compact(self, *a, **k):
    out = real(self, *a, **k)
    try:  # SIGTERM lands inside HDF5 code, which swallows the exception ("Exception ignored")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
    except KeyboardInterrupt:
        pass
    return out
st.FeatureStore.compact = compact
from cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_compaction_stops_after_the_write(tmp_path, corpus):
    wd = tmp_path / "wd"
    p = subprocess.run([sys.executable, "-c", _SWALLOW, "-q",
                        *extract_args(corpus, wd, features=("logmel:16", EGEMAPS))],
                       cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 130, p.stdout + p.stderr
    assert "rerun the same command" in p.stderr
    sets = json.loads(cli("list", "--workdir", str(wd), "--json").stdout)
    assert [s["spec"] for s in sets] == ["logmel:16"] and sets[0]["rows"] == 12
    assert sets[0]["parts_pending"] == 0  # the compaction that was running completed


def test_sigterm_while_compacting_for_real(tmp_path, corpus):
    """A real signal timed to the compaction's temporary file: exit 130, no further set."""
    wd = tmp_path / "wd"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), "-q",
                             *extract_args(corpus, wd, features=("opensmile:ComParE_2016", EGEMAPS))],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not list(wd.glob("features/.*.h5.*.tmp")):
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("finished before the signal")
    assert proc.returncode == 130, err
    specs = [s["spec"] for s in json.loads(cli("list", "--workdir", str(wd), "--json").stdout)]
    assert EGEMAPS not in specs


# 6 ------------------------------------------------------------------------------------------
def test_disk_full_during_compaction_exits_cleanly(tmp_path, corpus):
    args = lambda wd: extract_args(corpus, wd, "--flush-rows", "2",  # noqa: E731
                                   features=("opensmile:ComParE_2016",))
    ref = tmp_path / "ref"
    cli(*args(ref))
    size = sum(p.stat().st_size for p in (ref / "features").glob("*.h5"))
    with small_fs(tmp_path / "small", f"{int(size * 1.3) // 1024}k") as mnt:
        wd = mnt / "wd"
        p = cli(*args(wd), check=0)  # every row is stored (journal); compaction postponed
        assert "compaction" in p.stderr and "No space left" in p.stderr, p.stderr
        assert p.returncode not in (139, -11)
        assert list(wd.glob("features.journal/*/part-*.h5"))
        assert not list(wd.glob(".*.tmp"))
        v = cli("verify", "--workdir", str(wd), "--no-hash-check")
        assert "12 rows" in v.stdout
        roomy = tmp_path / "roomy"
        shutil.copytree(wd, roomy)
    p = cli(*args(roomy))
    assert "12 reused" in p.stdout and not (roomy / "features.journal").exists()


# 7 ------------------------------------------------------------------------------------------
def test_export_on_a_full_disk_keeps_the_old_file(tmp_path, corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd))
    with small_fs(tmp_path / "small", "256k") as mnt:
        npz, csv = mnt / "x.npz", mnt / "x.csv"
        export(wd, npz, "--split", "Val")
        old = npz.read_bytes()
        fill(mnt, leave=2048)
        for out in (npz, csv):
            p = cli("export", "--workdir", str(wd), "--features", EGEMAPS, "--out", str(out),
                    check=2)
            no_traceback(p)
            assert "disk is full" in p.stderr
        assert npz.read_bytes() == old and not csv.exists()
        assert sorted(q.name for q in mnt.iterdir()) == ["filler.bin", "x.npz"]


# 8 ------------------------------------------------------------------------------------------
def test_known_failures_are_messages_not_tracebacks(tmp_path, corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd, features=(EGEMAPS, "logmel:16")))
    train = ["train", "--workdir", str(wd), "--task", "avb-high", "--features", EGEMAPS,
             "--head", "ridge", "--n-boot", "5"]
    # export: a ragged field, a missing output folder
    p = cli("export", "--workdir", str(wd), "--features", "logmel:16", "--field", "logmel",
            "--out", str(tmp_path / "m.npz"), check=2)
    assert "ragged" in p.stderr
    p = cli("export", "--workdir", str(wd), "--features", EGEMAPS, "--out",
            str(tmp_path / "missing" / "dir" / "x.npz"), check=2)
    assert "does not exist" in p.stderr and "mkdir -p" in p.stderr
    # WORLD_SIZE without RANK
    env = {k: v for k, v in os.environ.items() if k != "RANK"} | {"WORLD_SIZE": "2"}
    p = cli(*extract_args(corpus, wd), check=2, env=env)
    assert "RANK" in p.stderr
    # a damaged journal part: list, list --json, train
    from extract.store import FeatureStore

    store = FeatureStore(wd)
    h = store.find(EGEMAPS)
    with store.writer(h) as w:
        w.add("extra", "h", {"functionals": np.ones(88, np.float32)})
    (part,) = wd.glob("features.journal/*/part-*.h5")
    part.write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    for args in (["list", "--workdir", str(wd)], ["list", "--workdir", str(wd), "--json"]):
        p = cli(*args, check=3)
        no_traceback(p)
        assert "verify" in p.stdout + p.stderr
    p = cli(*train, check=2)
    no_traceback(p)
    assert "verify" in p.stderr
    part.unlink()
    # a truncated store: train
    set_file = store.set_path(h.key)
    data = set_file.read_bytes()
    set_file.write_bytes(data[: len(data) // 2])
    p = cli(*train, check=2)
    no_traceback(p)
    assert f"python run_pipeline.py verify --workdir {wd} --repair" in p.stderr
    # verify --repair with the labels gone: nothing is moved aside
    labels = sorted((corpus / "labels").glob("*.csv"))
    away = tmp_path / "labels-away"
    shutil.copytree(corpus / "labels", away)
    try:
        for f in labels:
            f.unlink()
        p = cli("verify", "--workdir", str(wd), "--repair", check=3)
        no_traceback(p)
        assert "not repaired" in p.stdout and "nothing was moved" in p.stdout
        assert set_file.exists() and not list(wd.glob("features/*.damaged-*"))
    finally:
        for f in away.iterdir():
            shutil.copy(f, corpus / "labels" / f.name)


def test_a_read_only_workdir_is_a_message(tmp_path, corpus):
    with small_fs(tmp_path / "ro", "8m") as mnt:
        wd = mnt / "wd"
        cli(*extract_args(corpus, wd))
        read_only(mnt)
        for args in (["train", "--workdir", str(wd), "--task", "avb-high", "--features", EGEMAPS,
                      "--head", "ridge", "--n-boot", "5"],
                     extract_args(corpus, wd, features=("logmel:16",)),
                     ["report", "--workdir", str(wd)]):
            p = cli(*args, check=2)
            no_traceback(p)
            assert "Read-only file system" in p.stderr and "--workdir" in p.stderr


# 9 ------------------------------------------------------------------------------------------
def test_repair_without_sets_json_says_what_it_recovered(tmp_path, corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd, features=(EGEMAPS, "logmel:16")))
    keys = sorted(json.loads((wd / "sets.json").read_text()))
    # sets.json alone deleted: verify notices, the next extract does not shrink it to one set
    (wd / "sets.json").unlink()
    v = cli("verify", "--workdir", str(wd), check=3)
    assert "sets.json is missing" in v.stdout
    cli(*extract_args(corpus, wd))
    assert sorted(json.loads((wd / "sets.json").read_text())) == keys
    # sets.json deleted and the store truncated
    (wd / "sets.json").unlink()
    for set_file in (wd / "features").glob("*.h5"):  # every set's file
        data = set_file.read_bytes()
        set_file.write_bytes(data[: int(len(data) * 0.6)])
    r = cli("verify", "--workdir", str(wd), "--repair", check=None)
    no_traceback(r)
    for k in keys:  # every set is either recomputed or named with the reason
        assert (f"{k}: recomputed 12 row(s)" in r.stdout) or (f"{k}: not repaired:" in r.stdout), r.stdout
    assert any(f"{k}: header recovered from the bytes of the damaged {k}.h5" in r.stdout
               for k in keys), r.stdout
    if r.returncode == 0:
        assert sorted(json.loads((wd / "sets.json").read_text())) == keys


# scale: a no-op rerun -----------------------------------------------------------------------
def test_a_no_op_rerun_touches_nothing(tmp_path, corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd, features=(EGEMAPS, "logmel:16")))

    def stamp():
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in wd.rglob("*")
                if p.is_file() and p.name != "extract.lock"}

    before = stamp()
    p = cli(*extract_args(corpus, wd, features=(EGEMAPS, "logmel:16")))
    assert p.stdout.count("12 reused, 0 computed") == 2
    assert stamp() == before


# integrity: verify --deep -------------------------------------------------------------------
def test_verify_deep_rehashes_content_and_says_which_check_ran(tmp_path, own_corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(own_corpus, wd))
    wav = sorted((own_corpus / "audio" / "wav").glob("*.wav"))[2]
    st = wav.stat()
    raw = bytearray(wav.read_bytes())
    raw[-10:] = bytes(10)  # same size, same mtime below: only the content differs
    wav.write_bytes(bytes(raw))
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns))
    quick = cli("verify", "--workdir", str(wd))
    assert "cached hash" in quick.stdout
    deep = cli("verify", "--workdir", str(wd), "--deep", check=3)
    assert "rehashed (--deep)" in deep.stdout and "stale" in deep.stdout and wav.stem in deep.stdout
