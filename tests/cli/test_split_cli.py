"""A csv corpus without a split column through the real command line (issue 14 point 1):
train says what to do, the printed command makes a speaker-disjoint stratified split, and the
split is what every later command uses."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from clitools import cli

SR = 16000
FEATS = "opensmile:eGeMAPSv02"
MOODS = ("calm", "angry", "happy")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """36 clips, 12 speakers (3 clips each, one per mood), no split column."""
    root = tmp_path_factory.mktemp("nosplit") / "c"
    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(36):
        t = np.arange(int(0.3 * SR)) / SR
        x = 0.3 * np.sin(2 * np.pi * (150 + 60 * (i % 3)) * t) + 0.02 * rng.standard_normal(len(t))
        sf.write(root / "audio" / f"a{i}.wav", x.astype(np.float32), SR)
        rows.append({"file": f"audio/a{i}.wav", "speaker": f"s{i // 3:02d}", "mood": MOODS[i % 3],
                     "talker": f"t{i % 6}", "arousal": (i % 3) / 2 + 0.05 * rng.standard_normal()})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    wd = root.parent / "wd"
    p = cli("extract", "--corpus", str(root), "--layout", "csv", "--workdir", str(wd),
            "--features", FEATS, "--no-progress")
    assert "no clip has a split" in p.stdout and "--split auto" in p.stdout
    return wd


def hint_of(message: str) -> list[str]:
    """The arguments after ``run_pipeline.py`` of the command a message prints."""
    line = next(ln for ln in message.splitlines() if ln.strip().startswith("python run_pipeline.py"))
    return shlex.split(line)[2:]


def test_train_without_split_says_what_to_do_and_the_hint_works(workdir):
    p = cli("train", "--workdir", str(workdir), "--task", "classify:mood", "--features", FEATS,
            "--head", "logreg", "--run-name", "nosplit", check=2)
    assert "reshape" not in p.stderr
    assert "add a column `split` (train/val/test)" in p.stderr
    args = hint_of(p.stderr)
    assert args[0] == "extract" and args[-2:] == ["--split", "auto"]
    p = cli(*args)  # the printed command, as printed
    assert "automatic split written to" in p.stdout and "stratified by 'mood'" in p.stdout
    table = [ln.split() for ln in p.stdout.splitlines() if ln.strip().startswith(("Train", "Val", "Test"))]
    header = next(ln.split() for ln in p.stdout.splitlines() if "clips" in ln and "groups" in ln)
    assert header == ["clips", "groups", "angry", "calm", "happy"]
    rows = {r[0]: [int(v) for v in r[1:]] for r in table}
    # 12 speakers x 3 moods at 0.7 / 0.15 / 0.15: speakers 8 / 2 / 2, every mood in proportion
    assert rows == {"Train": [24, 8, 8, 8, 8], "Val": [6, 2, 2, 2, 2], "Test": [6, 2, 2, 2, 2]}

    split = pd.read_csv(workdir / "split.csv", dtype=str)
    assert split.groupby("group")["split"].nunique().max() == 1  # no speaker in two splits
    ref = json.loads((workdir / "corpus.json").read_text())
    assert ref["split"] == {"method": "auto", "seed": 0, "fractions": [0.7, 0.15, 0.15],
                            "stratify": "mood"}

    cli("train", "--workdir", str(workdir), "--task", "classify:mood", "--features", FEATS,
        "--head", "logreg", "--run-name", "auto")
    m = json.loads((workdir / "runs" / "auto" / "metrics.json").read_text())
    assert m["n_clips"] == {"Train": 24, "Val": 6, "Test": 6}
    val = pd.read_csv(workdir / "runs" / "auto" / "predictions_val_classify_mood.csv", dtype=str)
    assert set(val["File_ID"]) == set(split.loc[split["split"] == "Val", "clip_id"])


def test_speaker_is_no_label(workdir):
    p = cli("train", "--workdir", str(workdir), "--task", "classify:speaker", "--features", FEATS,
            "--head", "logreg", check=2)
    assert "needs label column(s) ['speaker']" in p.stderr


def test_rerun_keeps_the_split_and_seed_and_group_column_change_it(workdir):
    before = (workdir / "split.csv").read_text()
    root = json.loads((workdir / "corpus.json").read_text())["root"]
    p = cli("extract", "--corpus", root, "--layout", "csv", "--workdir", str(workdir),
            "--features", FEATS, "--no-progress")  # no --split: the workdir's split is kept
    assert "no clip has a split" not in p.stdout
    assert (workdir / "split.csv").read_text() == before
    cli("extract", "--corpus", root, "--layout", "csv", "--workdir", str(workdir),
        "--split", "auto", "--split-seed", "5", "--group-column", "talker",
        "--split-fractions", "0.5,0.25,0.25", "--split-stratify", "arousal")
    split = pd.read_csv(workdir / "split.csv", dtype=str)
    assert set(split["group"]) == {f"t{i}" for i in range(6)}
    assert split.groupby("group")["split"].nunique().max() == 1
    assert set(split["stratum"]) == {"q1", "q2", "q3", "q4"}
    ref = json.loads((workdir / "corpus.json").read_text())
    assert ref["group_column"] == "talker" and ref["split"]["seed"] == 5
    # speaker is a label again now that talker is the group
    cli("train", "--workdir", str(workdir), "--task", "classify:mood", "--features", FEATS,
        "--head", "logreg", "--run-name", "talker")
    m = json.loads((workdir / "runs" / "talker" / "metrics.json").read_text())
    assert sum(m["n_clips"].values()) == 36 and m["n_clips"]["Train"] == (split["split"] == "Train").sum()
    # back to the corpus's own split (it has none): train refuses again, exit 2
    cli("extract", "--corpus", root, "--layout", "csv", "--workdir", str(workdir), "--split", "corpus")
    assert not (workdir / "split.csv").exists()
    cli("train", "--workdir", str(workdir), "--task", "classify:mood", "--features", FEATS,
        "--head", "logreg", check=2)


def test_bad_split_options_exit_2(workdir, tmp_path):
    root = json.loads((workdir / "corpus.json").read_text())["root"]
    wd = tmp_path / "wd"
    for extra, says in ((["--features", FEATS, "--split-seed", "1"], "--split-seed goes with --split auto"),
                        (["--split", "auto", "--split-fractions", "0.9,0.2,0.1"], "sum to 1"),
                        (["--split", "auto", "--split-stratify", "nope"], "not a label column"),
                        (["--split", "auto", "--group-column", "nope"], "--group-column 'nope'"),
                        ([], "extract needs --features")):
        p = cli("extract", "--corpus", root, "--layout", "csv", "--workdir", str(wd), *extra,
                check=2)
        assert says in p.stderr, (extra, p.stderr)
