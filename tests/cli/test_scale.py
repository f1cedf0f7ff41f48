"""Many machines: --shard K/N + merge, torchrun ranks, the Ray engine; all equal one process."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from data.demo import make_demo_corpus

from clitools import ROOT, cli




def extract_args(corpus: Path, wd: Path, *extra: str) -> list[str]:
    return ["extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd),
            "--features", "opensmile:eGeMAPSv02", "--workers", "1", "--no-progress", *extra]


def datasets(wd: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted((wd / "features").glob("*.h5")):  # one file per set
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    out[f"{path.name}/{name}"] = obj[()]
            f.visititems(visit)
    assert out, f"no set files in {wd}"
    return out


def assert_same_store(a: Path, b: Path) -> None:
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        np.testing.assert_array_equal(da[name], db[name], err_msg=name)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scale") / "corpus"
    make_demo_corpus(root, n_clips=30, seed=8)
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus) -> Path:
    wd = tmp_path_factory.mktemp("ref")
    cli(*extract_args(corpus, wd))
    return wd


def test_shards_merge_to_the_single_process_store(tmp_path, corpus, reference):
    wd = tmp_path / "wd"
    sizes = []
    for k in range(3):
        out = cli(*extract_args(corpus, wd, "--shard", f"{k}/3")).stdout
        sizes.append(int(out.split(":")[1].split()[0]))
    assert sum(sizes) == 30 and all(s > 0 for s in sizes)
    assert len(list((wd / "shards").iterdir())) == 3
    merged = cli("merge", "--workdir", str(wd)).stdout
    assert "merged 3 shard(s), 30 rows" in merged
    assert not (wd / "shards").exists()
    assert_same_store(reference, wd)
    cli("verify", "--workdir", str(wd))


def test_partial_shard_resumes(tmp_path, corpus, reference):
    import signal
    import time

    wd = tmp_path / "wd"
    for k in range(2):
        cli(*extract_args(corpus, wd, "--shard", f"{k}/3"))
    # shard 2 is killed after its first journal part: a partial shard
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_pipeline.py"), "-q",
                             *extract_args(corpus, wd, "--shard", "2/3", "--flush-rows", "2")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not list(
            wd.glob("shards/2-of-3/features.journal/*/part-*.h5")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = cli(*extract_args(corpus, wd, "--shard", "2/3")).stdout
    reused = int(again.split(" reused")[0].split()[-1])
    assert reused >= 2 or proc.returncode == 0
    cli("merge", "--workdir", str(wd))
    assert_same_store(reference, wd)


def test_shards_with_other_config_are_refused(tmp_path, corpus):
    wd = tmp_path / "wd"
    cli(*extract_args(corpus, wd, "--shard", "0/2"))
    cli(*extract_args(corpus, wd, "--shard", "1/2", "--level", "lld"))
    # different level = different key: both sets merge side by side (no mixing)
    out = cli("merge", "--workdir", str(wd)).stdout
    assert out.count("merged 1 shard(s)") == 2


@pytest.mark.slow
def test_torchrun_ranks_shard_and_merge(tmp_path, corpus, reference):
    wd = tmp_path / "wd"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        str(ROOT / "run_pipeline.py"), "-q", *extract_args(corpus, wd)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "shard 0/2" in p.stdout and "shard 1/2" in p.stdout and "merged 2 shard(s)" in p.stdout
    assert_same_store(reference, wd)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (pip install '.[ray]')")
def test_ray_engine_on_a_local_cluster(tmp_path, corpus, reference):
    wd = tmp_path / "wd"
    env = {**__import__("os").environ, "RAY_AUTH_MODE": "disabled"}
    cli(*extract_args(corpus, wd, "--engine", "ray", "--ray-actors", "2"), env=env)
    assert_same_store(reference, wd)
