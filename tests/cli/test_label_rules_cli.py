"""Label rules through the real command line: infinite labels, classify: on a continuous
column, a constant Val target, number-valued classes and repeated rows (issue 11)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from clitools import cli

SR = 16000
FEATS = "opensmile:eGeMAPSv02"
N_AUDIO = 12


def _tone(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.4 * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (150 + 30 * seed) * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """12 real clips (8 Train, 4 Val) and 110 listed clips without audio (labels only)."""
    root = tmp_path_factory.mktemp("labels") / "c"
    (root / "audio").mkdir(parents=True)
    rows = []
    for i in range(N_AUDIO):
        sf.write(root / "audio" / f"a{i}.wav", _tone(i), SR)
        rows.append({
            "file": f"audio/a{i}.wav", "split": "train" if i < 8 else "val",
            "score": [0.1, 0.5, 1.7, np.inf, 0.4, 0.2, 0.9, 0.3, 0.8, -np.inf, 0.6, 0.7][i],
            "flat": float(i) if i < 8 else 2.5,  # constant on Val
            "mood": ["0.4115", "0.41150", "x", "x"][i % 4],  # two classes, one spelt two ways
            "rating": 0.5 + i / 1000,
        })
    for j in range(110):  # no audio: labels only, so the rating column has > 100 values
        rows.append({"file": f"audio/ghost{j}.wav", "split": "train", "score": 0.5, "flat": 1.0,
                     "mood": "x", "rating": 0.7 + j / 997})
    table = pd.DataFrame(rows)
    table.to_csv(root / "labels.csv", index=False)
    # a repeated row whose number is spelt differently is the same row: merged, not refused
    with open(root / "labels.csv", "a") as f:
        r = rows[0]
        f.write(f"{r['file']},{r['split']},0.10000,{r['flat']:.3f},0.41150,{r['rating']}\n")
    wd = root.parent / "wd"
    p = cli("extract", "--corpus", str(root), "--layout", "csv", "--workdir", str(wd),
            "--features", FEATS, "--no-progress", check=3)  # the ghosts fail: no audio
    workdir.extract_output = p.stdout + p.stderr
    return wd


def test_infinite_labels_are_counted_and_the_rule_stated(workdir):
    out = workdir_output()
    assert "label column 'score': 2 infinite value(s)" in out
    assert "treated as a missing label" in out
    p = cli("train", "--workdir", str(workdir), "--task", "regress:score", "--features", FEATS,
            "--head", "ridge", "--run-name", "inf")
    assert "n=3 of 4 Val clips; the others have no label" in p.stdout
    m = json.loads((workdir / "runs" / "inf" / "metrics.json").read_text())
    assert m["excluded_missing_labels"]["regress:score"]["score"] == 2  # a3 (Train) and a9 (Val)
    assert m["tasks"]["regress:score"]["val"]["targets"]["score"]["n"] == 3  # 4 Val, one infinite


def workdir_output() -> str:
    return workdir.extract_output


def test_repeated_row_with_number_spelt_differently_is_merged(workdir):
    out = workdir_output()
    assert "labels.csv: 1 file(s) listed on more than one identical row (audio/a0)" in out


def test_classify_on_a_continuous_column_is_refused(workdir):
    p = cli("train", "--workdir", str(workdir), "--task", "classify:rating", "--features", FEATS,
            "--head", "logreg", "--run-name", "cont", check=2)
    err = p.stdout + p.stderr
    assert "column 'rating' holds 122 distinct numbers" in err
    assert "--task regress:rating" in err


def test_constant_val_target_is_refused(workdir):
    p = cli("train", "--workdir", str(workdir), "--task", "regress:flat", "--features", FEATS,
            "--head", "ridge", "--run-name", "flat", check=2)
    err = p.stdout + p.stderr
    assert "column 'flat' is constant on Val (all 4 labelled Val clips are 2.5)" in err
    assert not (workdir / "runs" / "flat" / "metrics.json").exists()


def test_number_classes_compare_as_numbers(workdir):
    cli("train", "--workdir", str(workdir), "--task", "classify:mood", "--features", FEATS,
        "--head", "logreg", "--run-name", "mood")
    m = json.loads((workdir / "runs" / "mood" / "metrics.json").read_text())
    val = m["tasks"]["classify:mood"]["val"]["targets"]["mood"]
    assert val["classes"] == ["0.4115", "x"]  # '0.41150' is the number 0.4115: the same class
    assert val["confusion"] == [[0, 2], [0, 2]] and val["n"] == 4
