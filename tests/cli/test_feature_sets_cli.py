"""Several sets of one model (another pooling or layer extracted later) through the real command
line: `--features ssl:<model>` resolves by what is asked, and an ambiguity names only what
differs and prints commands that run."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from data.demo import make_demo_corpus
from tests.extract.conftest import build_tiny_model

from clitools import ROOT, cli

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("sets")
    corpus = make_demo_corpus(root / "corpus", n_clips=30, seed=4)
    model = build_tiny_model("wav2vec2-group", root / "tiny-w2v2")
    wd = root / "wd"
    base = ("extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd),
            "--features", f"ssl:{model}", "--workers", "1", "--no-progress", "--device", "cpu")
    cli(*base, "--poolings", "mean", env=ENV)
    # without -q: the log says that the new pooling is a set of its own, and how to pick it
    p = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), *base, "--poolings", "std"],
                       cwd=ROOT, capture_output=True, text=True, env=ENV)
    assert p.returncode == 0, p.stderr
    assert "is stored already as ssl-tiny-w2v2-" in p.stderr and 'poolings=["std"]' in p.stderr
    return wd, f"ssl:{model}"


def _keys(wd: Path) -> dict[str, list[str]]:
    """key -> stored poolings."""
    sets = json.loads(cli("list", "--workdir", str(wd), "--json").stdout)
    return {s["key"]: sorted(f[len("pooled_"):] for f in s["fields"] if f.startswith("pooled_"))
            for s in sets}


def _train_key(wd: Path, spec: str, run: str, *extra: str) -> str:
    cli("train", "--workdir", str(wd), "--task", "avb-two", "--features", spec, "--head", "ridge",
        "--run-name", run, *extra, env=ENV)
    (desc,) = json.loads((wd / "runs" / run / "config.json").read_text())["feature_sets"]
    return desc["key"], desc["field"]


def test_each_pooling_picks_the_set_that_stores_it(workdir):
    wd, spec = workdir
    keys = _keys(wd)
    assert sorted(keys.values()) == [["mean"], ["std"]]
    by_pooling = {p[0]: k for k, p in keys.items()}
    assert _train_key(wd, spec, "m") == (by_pooling["mean"], "pooled_mean")  # default pooling
    assert _train_key(wd, spec, "s", "--pooling", "std") == (by_pooling["std"], "pooled_std")
    # export resolves the same way
    out = wd.parent / "std.npz"
    p = cli("export", "--workdir", str(wd), "--features", spec, "--pooling", "std", "--out", str(out))
    assert by_pooling["std"] in p.stdout and out.is_file()


def test_a_pooling_no_set_stores_says_what_each_holds(workdir):
    wd, spec = workdir
    p = cli("train", "--workdir", str(wd), "--task", "avb-two", "--features", spec, "--head", "ridge",
            "--pooling", "max", check=2, env=ENV)
    err = p.stderr
    assert "none holds what was asked" in err and err.count("has no pooling 'max'") == 2, err
    assert "stored poolings: ['mean']" in err and "stored poolings: ['std']" in err
    assert "{" not in err  # no config blobs


def test_ambiguity_shows_only_the_differing_fields_and_commands_that_run(workdir, tmp_path):
    wd, spec = workdir
    # a third set holding mean again, for layer 2 only: `--pooling mean` is served twice
    corpus = json.loads((wd / "corpus.json").read_text())["root"]
    cli("extract", "--corpus", corpus, "--layout", "avb", "--workdir", str(wd), "--features", spec,
        "--workers", "1", "--no-progress", "--device", "cpu", "--poolings", "mean,std",
        "--layers", "2", env=ENV)
    keys = _keys(wd)
    assert len(keys) == 3
    argv = ["train", "--workdir", str(wd), "--task", "avb-two", "--features", spec, "--head",
            "ridge", "--run-name", "amb"]
    p = cli(*argv, check=2, env=ENV)
    err = p.stderr
    assert "2 feature sets match" in err and "they differ in layers, poolings:" in err, err
    assert "weights" not in err and "model_type" not in err and "{" not in err  # no whole configs
    mean_keys = sorted(k for k, p in keys.items() if "mean" in p)
    for k in mean_keys:
        line = next(ln for ln in err.splitlines() if ln.strip().startswith(f"{k}:"))
        assert "layers=" in line and "poolings=" in line
    # every printed command runs and trains on the set it names
    cmds = err.split("Run one of:\n", 1)[1].strip().splitlines()
    assert len(cmds) == 2
    for cmd, key in zip(cmds, mean_keys):
        args = shlex.split(cmd.strip())
        assert args[:2] == ["python", "run_pipeline.py"] and key in args
        r = subprocess.run([sys.executable, *args[1:]], cwd=ROOT, capture_output=True, text=True,
                           env=ENV)
        assert r.returncode == 0, r.stderr
        (desc,) = json.loads((wd / "runs" / "amb" / "config.json").read_text())["feature_sets"]
        assert desc["key"] == key
    # asking for the layer only one of them stores resolves without a key
    assert _train_key(wd, spec, "l3", "--layer", "3")[0] == next(
        k for k, p in keys.items() if p == ["mean"])
