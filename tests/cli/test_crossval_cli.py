"""train --cv / --test-group through the command line: one run per fold, scores over folds
(mean ± std and pooled) checked against the fold runs' own predictions and scikit-learn."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from sklearn.metrics import accuracy_score, f1_score, recall_score

from clitools import cli

CLASSES = ("low", "mid", "high")
SPEAKERS = [f"{s:02d}{g}" for s in (1, 2, 3) for g in ("F", "M")]


@pytest.fixture(scope="module")
def cv_workdir(tmp_path_factory) -> Path:
    """Three sessions of two speakers, 12 clips each; the class sets the tone's pitch (with a
    speaker-dependent offset), so eGeMAPS separates the classes well but not perfectly."""
    root = tmp_path_factory.mktemp("cv") / "corpus"
    rng = np.random.default_rng(0)
    rows = []
    for si, spk in enumerate(SPEAKERS):
        for k in range(12):
            label = CLASSES[k % 3]
            f0 = {"low": 140.0, "mid": 200.0, "high": 280.0}[label] * (1 + 0.06 * si) * rng.uniform(0.9, 1.1)
            t = np.arange(int(16000 * rng.uniform(0.5, 0.8))) / 16000
            wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
            name = f"{spk}_{k:02d}.wav"
            (root / "wav").mkdir(parents=True, exist_ok=True)
            sf.write(root / "wav" / name, wave.astype(np.float32), 16000, subtype="PCM_16")
            rows.append({"file": f"wav/{name}", "speaker": spk, "session": spk[:2], "tone": label})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    wd = root.parent / "wd"
    cli("extract", "--corpus", str(root), "--layout", "csv", "--labels", str(root / "labels.csv"),
        "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02", "--no-progress")
    return wd


def _fold_predictions(folder: Path, split: str = "test") -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in sorted(folder.glob(f"*/predictions_{split}_classify_tone.csv"))]
    return pd.concat(frames, ignore_index=True)


def test_leave_one_speaker_out_scores_over_folds(cv_workdir: Path):
    p = cli("train", "--workdir", str(cv_workdir), "--task", "classify:tone", "--features",
            "opensmile:eGeMAPSv02", "--head", "logreg", "--cv", "leave-one-out:speaker",
            "--run-name", "loso")
    folder = cv_workdir / "runs" / "loso"
    cv = json.loads((folder / "cv.json").read_text())
    assert [f["name"] for f in cv["folds"]] == [f"speaker={s}" for s in SPEAKERS]
    # partner Val: the rest of the held-out speaker's session (its partner), 12 clips
    assert all(f["val_rule"] == "partner" and f["val_groups"] == [str(int(s[:2]))]
               and f["counts"] == {"Train": 48, "Val": 12, "Test": 12}
               for f, s in zip(cv["folds"], SPEAKERS))
    val = pd.read_csv(folder / "speaker_01F" / "predictions_val_classify_tone.csv")
    assert set(val["File_ID"].str.split("/").str[-1].str[:3]) == {"01M"}  # ids: wav/01M_00
    block = cv["tasks"]["classify:tone"]["test"]
    fold_scores = [json.loads((folder / f"speaker_{s}" / "metrics.json").read_text())
                   ["tasks"]["classify:tone"]["test"]["score"] for s in SPEAKERS]
    assert block["score"]["folds"] == pytest.approx(fold_scores)
    assert block["score"]["mean"] == pytest.approx(np.mean(fold_scores))
    assert block["score"]["std"] == pytest.approx(np.std(fold_scores, ddof=1))
    # pooled: every clip tested once; WA, UA and macro-F1 of all Test predictions together
    preds = _fold_predictions(folder)
    truth = pd.read_csv(cv_workdir.parent / "corpus" / "labels.csv")
    truth["File_ID"] = truth["file"].str.replace(".wav", "", regex=False)
    merged = preds.merge(truth, on="File_ID", suffixes=("_pred", ""))
    assert len(merged) == len(truth) == 72
    y, yhat = merged["tone"], merged["tone_pred"]
    pooled = block["targets"]["tone"]["pooled"]
    assert pooled["n"] == 72
    assert pooled["wa"] == pytest.approx(accuracy_score(y, yhat))
    assert pooled["uar"] == pytest.approx(recall_score(y, yhat, average="macro"))
    assert pooled["macro_f1"] == pytest.approx(f1_score(y, yhat, average="macro"))
    assert "pooled over 72 clips" in p.stdout and "mean ± std over 6 folds" in p.stdout
    csv = pd.read_csv(folder / "cv.csv")
    assert {"tone.wa", "tone.uar", "tone.macro_f1"} <= set(csv["quantity"])


def test_test_group_is_one_fold_and_clashes_are_refused(cv_workdir: Path):
    p = cli("train", "--workdir", str(cv_workdir), "--task", "classify:tone", "--features",
            "opensmile:eGeMAPSv02", "--head", "logreg", "--test-group", "01F",
            "--run-name", "one")
    cv = json.loads((cv_workdir / "runs" / "one" / "cv.json").read_text())
    (fold,) = cv["folds"]
    assert fold["test_groups"] == ["01F"] and fold["counts"] == {"Train": 48, "Val": 12, "Test": 12}
    assert "1 fold(s) of test-group:01F" in p.stdout
    p = cli("train", "--workdir", str(cv_workdir), "--task", "classify:tone", "--features",
            "opensmile:eGeMAPSv02", "--head", "logreg", "--test-group", "01F", "--cv",
            "leave-one-out:speaker", check=2)
    assert "not both" in p.stderr
    p = cli("train", "--workdir", str(cv_workdir), "--task", "classify:tone", "--features",
            "opensmile:eGeMAPSv02", "--head", "logreg", "--cv", "leave-one-out:room", check=2)
    assert "no column 'room'" in p.stderr
    assert not (cv_workdir / "runs").joinpath("x").exists()
