"""Saved models and ``predict`` as a user runs them (issue 14 point 7).

Every ``train`` run keeps its model (``model.json`` beside joblib / torch files); ``predict``
scores a corpus or loose audio files with it. References: the run's own
``predictions_val_*.csv`` (written by heads/experiment.py when it trained), and, for new audio,
features extracted by a separate ``extract`` + ``export`` of that file fed to the saved
scikit-learn pipeline.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data.demo import make_demo_corpus
from tests.extract.conftest import build_tiny_model

from clitools import cli

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TASKS = "avb-type,avb-two"  # one classification and one regression target
RUNS = {  # run name -> train flags
    "ridge": ("--head", "ridge"),
    "logreg": ("--head", "logreg"),
    "mlp": ("--head", "mlp-mtl", "--epochs", "4", "--seeds", "2", "--device", "cpu"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(corpus, workdir): a 48-clip demo corpus, eGeMAPS, one run per entry of RUNS."""
    base = tmp_path_factory.mktemp("predict")
    corpus = make_demo_corpus(base / "corpus", n_clips=48, seed=5)
    wd = base / "wd"
    cli("extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd),
        "--features", "opensmile:eGeMAPSv02", "--workers", "1", "--no-progress", env=ENV)
    for name, flags in RUNS.items():
        cli("train", "--workdir", str(wd), "--task", TASKS, "--features", "opensmile:eGeMAPSv02",
            *flags, "--n-boot", "20", "--run-name", name, env=ENV)
    return corpus, wd


def _run_predictions(run: Path, task: str) -> pd.DataFrame:
    table = pd.read_csv(run / f"predictions_val_{task}.csv", dtype={"File_ID": str})
    table.index = table.pop("File_ID").str.strip("[]")
    return table


def _new_wav(path: Path) -> Path:
    t = np.arange(int(1.7 * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * 330 * t) * np.exp(-1.5 * t) + 0.01 * np.sin(2 * np.pi * 41 * t)
    sf.write(path, x.astype(np.float32), 16000)
    return path


def _egemaps(wav: Path) -> np.ndarray:
    """eGeMAPSv02 functionals of a file by openSMILE itself (1, 88)."""
    import opensmile

    from data.audio import load_audio

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    return smile.process_signal(load_audio(wav), 16000).to_numpy(np.float32)


def _stored_row(store_dir: Path, key: str, field: str, clip_id: str, index=None) -> np.ndarray:
    from extract.store import FeatureStore

    X, ok = FeatureStore(store_dir).read(key, field, [clip_id], index=index)
    assert ok.all(), f"{clip_id} has no row in {store_dir}"
    return X.astype(np.float32).reshape(1, -1)


@pytest.mark.parametrize("name", list(RUNS))
def test_predict_val_clips_equals_the_runs_own_predictions(tmp_path, trained, name):
    corpus, wd = trained
    run = wd / "runs" / name
    manifest = json.loads((run / "model.json").read_text())
    assert manifest["format"] == "vocal-probe-model" and manifest["version"] == 1
    assert manifest["features"][0]["key"].startswith("opensmile-eGeMAPSv02-functionals-")
    assert [t["name"] for t in manifest["tasks"]] == ["avb-type", "avb-two"]
    out = tmp_path / "p.csv"
    p = cli("predict", "--run", str(run), "--corpus", str(corpus), "--layout", "avb",
            "--split", "Val", "--out", str(out), "--device", "cpu", "--no-progress", env=ENV)
    assert "16 clip(s) scored" in p.stdout and "16 read from the run's workdir store" in p.stdout
    got = pd.read_csv(out, dtype={"id": str}).set_index("id")
    for task in ("avb-type", "avb-two"):
        want = _run_predictions(run, task)
        assert sorted(got.index) == sorted(want.index)
        mine = got.loc[want.index]
        for col in want.columns:
            if pd.api.types.is_numeric_dtype(want[col]):
                # classical heads: the same pipeline on the same rows, bit for bit; torch: the
                # same net on the same standardised rows (another batch size: float tolerance)
                tol = 0.0 if name != "mlp" else 2e-6
                np.testing.assert_allclose(mine[col].to_numpy(), want[col].to_numpy(), rtol=0,
                                           atol=tol, err_msg=f"{name} {task} {col}")
            else:
                assert (mine[col] == want[col]).all(), f"{name} {task} {col}"
    probs = [c for c in got.columns if c.startswith("p_Voc_Type_")]
    if name == "ridge":
        assert probs == []  # a ridge classifier gives no probabilities: none are made up
    else:
        assert len(probs) == 8
        P = got[probs].to_numpy()
        np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-5)
        best = [probs[i].removeprefix("p_Voc_Type_") for i in P.argmax(axis=1)]
        assert best == list(got["Voc_Type"])


def test_mlp_with_seeds_predicts_with_the_reported_seed(trained):
    _, wd = trained
    run = wd / "runs" / "mlp"
    manifest = json.loads((run / "model.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    for entry in manifest["tasks"]:
        scores = metrics["tasks"][entry["name"]]["val"]["seed_scores"]
        assert entry["seed"] == int(np.argsort(scores)[len(scores) // 2])  # the median seed
        assert entry["targets"][0]["model"] == f"model_seed{entry['seed']}.pt"
    assert (run / "model_seed0.pt").is_file() and (run / "model_seed1.pt").is_file()


def test_predict_new_audio_with_a_classical_run(tmp_path, trained):
    corpus, wd = trained
    run = wd / "runs" / "logreg"
    new = _new_wav(tmp_path / "new.wav")
    val_id = _run_predictions(run, "avb-type").index[0]
    known = tmp_path / "known.wav"
    shutil.copy(corpus / "audio" / "wav" / f"{val_id}.wav", known)
    store_before = {p: p.read_bytes() for p in sorted((wd / "features").glob("*.h5"))}
    assert store_before
    out = tmp_path / "a.csv"
    p = cli("predict", "--run", str(run), "--audio", str(new), str(known), "--out", str(out),
            "--no-progress", env=ENV)
    assert "2 clip(s) scored" in p.stdout and "1 read from the run's workdir store" in p.stdout
    # the corpus's store is untouched
    assert {p: p.read_bytes() for p in sorted((wd / "features").glob("*.h5"))} == store_before
    assert list((wd / "predict" / "features").glob("*.h5"))
    got = pd.read_csv(out).set_index("file")
    # a copy of a Val clip: the run's own prediction
    want_type = _run_predictions(run, "avb-type").loc[val_id, "Voc_Type"]
    want_two = _run_predictions(run, "avb-two").loc[val_id]
    assert got.loc[str(known.absolute()), "Voc_Type"] == want_type
    assert got.loc[str(known.absolute()), "Valence"] == want_two["Valence"]
    # new audio: its features in the prediction store are openSMILE's own, and the predictions
    # are the saved scikit-learn pipelines' on them
    import joblib

    key = json.loads((run / "model.json").read_text())["features"][0]["key"]
    X = _stored_row(wd / "predict", key, "functionals", str(new.absolute()))
    np.testing.assert_allclose(X, _egemaps(new), rtol=1e-6, atol=1e-6)
    row = got.loc[str(new.absolute())]
    saved = joblib.load(run / "model_avb-type_type_seed0.joblib")
    code = saved["classes"][int(saved["pipeline"].predict(X)[0])]
    classes = json.loads((run / "model.json").read_text())["tasks"][0]["targets"][0]["classes"]
    assert row["Voc_Type"] == classes[code]
    probs = saved["pipeline"].predict_proba(X)[0]
    for j, c in enumerate(saved["classes"]):
        assert row[f"p_Voc_Type_{classes[c]}"] == pytest.approx(probs[j], abs=1e-6)
    two = joblib.load(run / "model_avb-two_two_seed0.joblib")["pipeline"].predict(X)[0]
    np.testing.assert_allclose([row["Valence"], row["Arousal"]], two, atol=1e-6)
    # a second predict reuses the prediction store's row
    p = cli("predict", "--run", str(run), "--audio", str(new), "--out", str(out), env=ENV)
    assert "1 already in the prediction store, 0 extracted" in p.stdout
    assert pd.read_csv(out).loc[0, "Voc_Type"] == row["Voc_Type"]


def test_predict_refusals_exit_2_with_a_working_fix(tmp_path, trained):
    corpus, wd = trained
    p = cli("predict", "--run", str(wd / "runs" / "nope"), "--corpus", str(corpus), check=2)
    assert "--corpus needs --layout" in p.stderr
    _new_wav(tmp_path / "n.wav")
    # a run from before models were saved: the message gives the train command, which works
    old = wd / "runs" / "old-ridge"
    shutil.copytree(wd / "runs" / "ridge", old)
    cfg = json.loads((old / "config.json").read_text())
    cfg["run_name"] = "old-ridge"
    (old / "config.json").write_text(json.dumps(cfg))
    (old / "model.json").unlink()
    p = cli("predict", "--run", str(old), "--audio", str(tmp_path / "n.wav"), check=2)
    assert "has no model.json" in p.stderr
    hint = p.stderr.split("Train it again: ")[1].strip()
    argv = shlex.split(hint)
    assert argv[:2] == ["python", "run_pipeline.py"]
    cli(*argv[2:], env=ENV)
    assert (old / "model.json").is_file()
    cli("predict", "--run", str(old), "--audio", str(tmp_path / "n.wav"), "--out",
        str(tmp_path / "o.csv"), env=ENV)


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(corpus, workdir, model): a tiny random wav2vec2, layers 2 and 3 stored, ridge on layer 3."""
    base = tmp_path_factory.mktemp("predict-ssl")
    corpus = make_demo_corpus(base / "corpus", n_clips=32, seed=8)
    model = build_tiny_model("wav2vec2-group", base / "tiny-w2v2")
    wd = base / "wd"
    cli("extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd), "--features",
        f"ssl:{model}", "logmel:16", "--layers", "2,3", "--poolings", "mean", "--frames-layers",
        "3", "--device", "cpu", "--workers", "1", "--no-progress", env=ENV)
    cli("train", "--workdir", str(wd), "--task", "avb-two", "--features", f"ssl:{model}",
        "--layer", "3", "--head", "ridge", "--n-boot", "20", "--run-name", "ssl-ridge", env=ENV)
    for name, feats, head in (("ssl-lstm", f"ssl:{model}", "lstm"),
                              ("logmel-cnn", "logmel:16", "resnet18")):
        cli("train", "--workdir", str(wd), "--task", TASKS, "--features", feats,
            "--head", head, "--epochs", "2", "--device", "cpu", "--n-boot", "20", "--run-name",
            name, *(("--layer", "3") if head == "lstm" else ()), env=ENV)
    return corpus, wd, model


@pytest.mark.parametrize("name", ["ssl-lstm", "logmel-cnn"])
def test_sequence_heads_predict_val_clips_as_their_run(tmp_path, ssl_run, name):
    """Frame-sequence heads: SSL frames (lstm) and log-mel spectrograms (resnet18)."""
    corpus, wd, _ = ssl_run
    run = wd / "runs" / name
    assert json.loads((run / "model.json").read_text())["input_kind"] == "sequence"
    out = tmp_path / "s.csv"
    cli("predict", "--run", str(run), "--corpus", str(corpus), "--layout", "avb", "--split", "Val",
        "--out", str(out), "--device", "cpu", "--no-progress", env=ENV)
    got = pd.read_csv(out, dtype={"id": str}).set_index("id")
    for task in ("avb-type", "avb-two"):
        want = _run_predictions(run, task)
        mine = got.loc[want.index]
        for col in want.columns:
            if pd.api.types.is_numeric_dtype(want[col]):
                np.testing.assert_allclose(mine[col], want[col], rtol=0, atol=2e-6, err_msg=col)
            else:
                assert (mine[col] == want[col]).all(), col


def test_predict_with_an_ssl_run_and_a_missing_model(tmp_path, ssl_run):
    corpus, wd, model = ssl_run
    run = wd / "runs" / "ssl-ridge"
    out = tmp_path / "v.csv"
    cli("predict", "--run", str(run), "--corpus", str(corpus), "--layout", "avb", "--split", "Val",
        "--out", str(out), "--device", "cpu", "--no-progress", env=ENV)
    got = pd.read_csv(out, dtype={"id": str}).set_index("id")
    want = _run_predictions(run, "avb-two")
    np.testing.assert_array_equal(got.loc[want.index, ["Valence", "Arousal"]].to_numpy(),
                                  want[["Valence", "Arousal"]].to_numpy())
    # new audio: layer 3 of the tiny model, mean over its frames (transformers' own forward,
    # stored as float16), and the saved pipeline's prediction on the stored row
    import joblib
    import torch
    from transformers import AutoModel

    from data.audio import load_audio

    new = _new_wav(tmp_path / "new.wav")
    cli("predict", "--run", str(run), "--audio", str(new), "--out", str(out), "--device", "cpu",
        "--no-progress", env=ENV)
    key = json.loads((run / "model.json").read_text())["features"][0]["key"]
    X = _stored_row(wd / "predict", key, "pooled_mean", str(new.absolute()), index=1)
    x = load_audio(new).astype(np.float64)
    x = ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(model).eval()(
            torch.from_numpy(x)[None], output_hidden_states=True).hidden_states[3]
    ref = hidden[0].mean(0).numpy().astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(X[0], ref, rtol=2e-3, atol=2e-3)
    want = joblib.load(run / "model_avb-two_two_seed0.joblib")["pipeline"].predict(X)[0]
    np.testing.assert_allclose(pd.read_csv(out)[["Valence", "Arousal"]].to_numpy()[0], want,
                               atol=1e-6)
    # the model folder is gone: predict cannot compute the run's features and says so
    moved = model.with_name("moved-away")
    model.rename(moved)
    try:
        p = cli("predict", "--run", str(run), "--audio", str(new), "--out", str(out), check=2)
    finally:
        moved.rename(model)
    assert "cannot be computed here" in p.stderr and str(model) in p.stderr


def test_every_run_keeps_its_model_files(trained):
    _, wd = trained
    for name in ("ridge", "logreg"):
        run = wd / "runs" / name
        assert sorted(f.name for f in run.glob("model_*.joblib")) == [
            "model_avb-two_two_seed0.joblib", "model_avb-type_type_seed0.joblib"]
