"""heads/saved_model.py: the manifest's refusals and the retrain hint (fast, no training)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from heads.classical.selection import fit_select
from heads.scoring import mean_ccc_score
from heads.saved_model import (FORMAT, MANIFEST, VERSION, SavedModelError, classical_file,
                               load_saved_model, retrain_command, save_classical)


def _manifest(run: Path, **changes) -> dict:
    m = {"format": FORMAT, "version": VERSION, "head": "ridge", "family": "classical",
         "input_kind": "vector",
         "features": [{"key": "k", "spec": "s", "field": "functionals", "layer": None, "dim": 3}],
         "tasks": [{"name": "regress:y", "headline": "ccc", "seed": 0, "targets": [
             {"name": "y", "kind": "regression", "columns": ["y"], "metric": "ccc",
              "classes": None, "value_range": [0.0, 1.0], "model": classical_file("regress:y", "y", 0)}]}],
         **changes}
    (run / MANIFEST).write_text(json.dumps(m))
    return m


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run folder with one saved ridge model of a regression target clipped to [0, 1]."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = np.clip(0.5 + 0.3 * X[:, 0], 0, 1)
    sel = fit_select("ridge", "regression", X[:30], y[:30], X[30:], y[30:],
                     score_fn=mean_ccc_score)
    r = tmp_path / "runs" / "r1"
    save_classical(r, "regress:y", "y", 0, sel)
    (r / "config.json").write_text(json.dumps({"workdir": "runs/w", "task": "regress:y",
                                               "features": ["opensmile:eGeMAPSv02"],
                                               "head": "ridge", "seeds": 1, "layer": None,
                                               "pooling": "mean", "options": {}}))
    _manifest(r)
    return r


def test_predict_rows_equal_the_pipeline_clipped_to_the_range(run: Path) -> None:
    import joblib

    model = load_saved_model(run)
    X = np.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0], [-9.0, 1.0, 1.0]], np.float32)
    got = model.predict(X)["regress:y"]["y"]
    want = joblib.load(run / classical_file("regress:y", "y", 0))["pipeline"].predict(X)
    np.testing.assert_array_equal(got.values[:, 0], np.clip(want, 0, 1).astype(np.float32))
    assert got.values[1, 0] == 1.0 and got.values[2, 0] == 0.0 and got.probabilities is None
    with pytest.raises(SavedModelError, match="reads 3 feature columns"):
        model.predict(np.zeros((2, 4), np.float32))


def test_other_version_damaged_and_missing_files_are_refused(run: Path) -> None:
    _manifest(run, version=VERSION + 1)
    with pytest.raises(SavedModelError, match=f"version {VERSION + 1}.*reads version {VERSION}"):
        load_saved_model(run)
    (run / MANIFEST).write_text("{not json")
    with pytest.raises(SavedModelError, match="is damaged"):
        load_saved_model(run)
    _manifest(run)
    (run / classical_file("regress:y", "y", 0)).unlink()
    with pytest.raises(SavedModelError, match="lacks the model file"):
        load_saved_model(run)


def test_retrain_command_is_the_runs_train_command(run: Path) -> None:
    argv = shlex.split(retrain_command(run))
    assert argv == ["python", "run_pipeline.py", "train", "--workdir", "runs/w", "--task",
                    "regress:y", "--features", "opensmile:eGeMAPSv02", "--head", "ridge",
                    "--run-name", "r1"]
    (run / MANIFEST).unlink()
    with pytest.raises(SavedModelError, match="Train it again: python run_pipeline.py train"):
        load_saved_model(run)
