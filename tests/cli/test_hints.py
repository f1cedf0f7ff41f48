"""Every fix-it hint the tool prints is a command that runs: each hint a test can trigger is
triggered through the command line, its command is read out of stderr / stdout and executed
as printed (from the repository root), and it must exit 0."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tests.extract.conftest import build_tiny_model

from clitools import ROOT, cli

HINT = re.compile(r"`(python run_pipeline\.py [^`]+)`|^\s+(python run_pipeline\.py .+)$", re.M)


def hints(text: str) -> list[str]:
    """Every command a message suggests: backticked, or on a line of its own."""
    return [a or b for a, b in HINT.findall(text)]


def run_hint(command: str, *, expect: int = 0) -> subprocess.CompletedProcess:
    """Execute a printed command as a user pastes it (``python`` is this interpreter)."""
    argv = shlex.split(command)
    assert argv[:2] == ["python", "run_pipeline.py"], command
    p = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == expect, f"hint `{command}` exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def _csv_corpus(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = root / "audio" / f"c{i:02d}.wav"
        if not path.exists():
            t = np.arange(int(16000 * (0.6 + 0.05 * i))) / 16000
            sf.write(path, 0.3 * np.sin(2 * np.pi * (150 + 9 * i) * t)
                     + 0.02 * rng.standard_normal(len(t)), 16000)
        rows.append({"file": f"audio/c{i:02d}.wav", "split": ("train", "val", "test")[i % 3],
                     "awe": float(i % 5) / 4})
    labels = root / "my labels.csv"  # a space: the hint must quote it
    pd.DataFrame(rows).to_csv(labels, index=False)
    return labels


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A csv corpus (labels file with a space in its name) with eGeMAPS and a tiny SSL set."""
    base = tmp_path_factory.mktemp("hints")
    labels = _csv_corpus(base / "corpus", 18)
    model = build_tiny_model("wav2vec2-group", base / "tiny-w2v2")
    wd = base / "wd"
    cli("extract", "--corpus", str(base / "corpus"), "--layout", "csv", "--labels", str(labels),
        "--workdir", str(wd), "--workers", "1", "--features", "opensmile:eGeMAPSv02", f"ssl:{model}")
    return {"wd": wd, "corpus": base / "corpus", "labels": labels, "model": model}


def test_sequence_head_on_pooled_features_hint_stores_frames(workdir):
    wd = workdir["wd"]
    p = cli("train", "--workdir", str(wd), "--task", "regress:awe", "--features", "ssl-tiny-w2v2",
            "--head", "lstm", "--epochs", "1", check=2)
    (cmd,) = hints(p.stderr)
    # the set's spec (not its name), the corpus as recorded, and the frames to store
    assert f"--features ssl:{workdir['model']}" in cmd and "--frames-layers 3" in cmd, cmd
    assert shlex.quote(str(workdir["labels"])) in cmd and "--layout csv" in cmd
    run_hint(cmd)
    listing = cli("list", "--workdir", str(wd)).stdout
    assert "frames_l3" in listing, listing


def test_missing_feature_set_hint_extracts_it_and_train_then_runs(workdir):
    wd = workdir["wd"]
    train = ["train", "--workdir", str(wd), "--task", "regress:awe", "--features",
             "opensmile:ComParE_2016", "--head", "ridge", "--n-boot", "10"]
    p = cli(*train, check=2)
    (cmd,) = hints(p.stderr)
    assert "--features opensmile:ComParE_2016" in cmd
    run_hint(cmd)
    cli(*train)


def test_verify_fix_hint_computes_the_missing_clips(workdir):
    wd = workdir["wd"]
    _csv_corpus(workdir["corpus"], 21)  # three new clips in the labels file
    p = cli("verify", "--workdir", str(wd), "--no-hash-check", check=None)
    fixes = [c for c in hints(p.stdout + p.stderr) if " extract " in c]
    assert fixes, p.stdout
    for cmd in dict.fromkeys(fixes):
        run_hint(cmd)
    after = cli("verify", "--workdir", str(wd), "--no-hash-check", check=None)
    assert "missing" not in after.stdout, after.stdout


def test_workdir_without_corpus_hint_runs_once_root_and_layout_are_named(workdir, tmp_path):
    empty = tmp_path / "fresh"
    empty.mkdir()
    p = cli("train", "--workdir", str(empty), "--task", "regress:awe", "--features",
            "opensmile:eGeMAPSv02", "--head", "ridge", check=2)
    (cmd,) = [c for c in hints(p.stderr) if " extract " in c]
    assert "--corpus ROOT --layout LAYOUT" in cmd and f"--workdir {empty}" in cmd
    # the only placeholders are what nobody but the user knows: fill them and it runs
    filled = cmd.replace("--corpus ROOT --layout LAYOUT", "--corpus {} --layout csv --labels {}".format(
        shlex.quote(str(workdir["corpus"])), shlex.quote(str(workdir["labels"]))))
    run_hint(filled)
    assert json.loads((empty / "corpus.json").read_text())["layout"] == "csv"


def test_damaged_store_hint_repairs_it(workdir, tmp_path):
    wd = tmp_path / "wd"
    cli("extract", "--corpus", str(workdir["corpus"]), "--layout", "csv", "--labels",
        str(workdir["labels"]), "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02")
    (path,) = (wd / "features").glob("*.h5")  # the set's own file
    path.write_bytes(b"not an HDF5 file at all" * 100)
    p = cli("verify", "--workdir", str(wd), check=None)
    repairs = [c for c in hints(p.stdout + p.stderr) if "--repair" in c]
    assert repairs, p.stdout + p.stderr
    run_hint(repairs[0])
    cli("verify", "--workdir", str(wd))
