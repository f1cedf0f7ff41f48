"""Segments through the real command line: a long file with start/end rows in a csv corpus.

The features of each segment equal the features of the same span cut out and saved as its own
file (openSMILE functionals to 1e-5 relative; SSL pooled embeddings of a tiny random model to
cosine >= 0.999, every layer); bad segment rows fail naming their line and the rest is stored
(exit 3); verify finds no stale row; exports carry file, start and end.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from clitools import cli
from tests.extract.conftest import build_tiny_model

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
RATE = 44100
SEGMENTS = [(1.5, 3.5), (10.25, 12.0), (20.0, 23.3), (35.0, None)]  # None: to the end (40 s)
BAD = {  # rows after the good ones; line numbers count the header as line 1
    "long@38-41": "past the end of the file",
    "long@5-4": "not before the end",
    "long@11-13": "overlaps the segment 10.25 s to 12 s of labels.csv line 3",
    "long@-0.5-1": "negative",
}


def _signal(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 + 60 * np.sin(2 * np.pi * 0.3 * t)  # a gliding voice-like tone with noise
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / RATE) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.7 * t))
    x = x + 0.01 * np.random.default_rng(3).standard_normal(len(t))
    return np.stack([x, 0.8 * x], axis=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("segcorpus")
    sf.write(root / "long.wav", _signal(40.0), RATE, subtype="PCM_16")
    stored, _ = sf.read(root / "long.wav", dtype="int16", always_2d=True)
    (root / "cut").mkdir()
    rows = []
    for i, (start, end) in enumerate(SEGMENTS):
        rows.append({"file": "long.wav", "start": start, "end": "" if end is None else end,
                     "split": "train", "y": i})
        first = int(np.floor(start * RATE + 0.5))
        stop = len(stored) if end is None else int(np.floor(end * RATE + 0.5))
        sf.write(root / "cut" / f"seg{i}.wav", stored[first:stop], RATE, subtype="PCM_16")
    for cid in BAD:
        start, end = cid.split("@")[1].rsplit("-", 1) if not cid.endswith("-0.5-1") else ("-0.5", "1")
        rows.append({"file": "long.wav", "start": start, "end": end, "split": "val", "y": 9})
    rows += [{"file": f"cut/seg{i}.wav", "start": "", "end": "", "split": "val", "y": i}
             for i in range(len(SEGMENTS))]
    table = pd.DataFrame(rows)
    table.loc[1, "start"] = "00:00:10.250"  # the clock form reads the same
    table.to_csv(root / "labels.csv", index=False)
    return root


def _seg_id(i: int) -> str:
    start, end = SEGMENTS[i]
    fmt = lambda t: f"{t:g}"  # noqa: E731
    return f"long@{fmt(start)}-{'end' if end is None else fmt(end)}"


@pytest.mark.slow
def test_segment_features_equal_the_cut_out_files(tmp_path, corpus):
    model = build_tiny_model("wav2vec2-group", tmp_path / "tiny")
    wd = tmp_path / "wd"
    p = cli("extract", "--corpus", str(corpus), "--layout", "csv", "--workdir", str(wd),
            "--features", "opensmile:eGeMAPSv02", "opensmile:ComParE_2016", f"ssl:{model}",
            "--layers", "all", "--poolings", "mean,max", "--workers", "2", check=3, env=ENV)
    for cid, fragment in BAD.items():  # each bad row fails, naming its line, for every set
        lines = [ln for ln in p.stdout.splitlines() if f" {cid}: " in ln]
        assert len(lines) == 3 and all("labels.csv line" in ln and fragment in ln for ln in lines), (
            cid, p.stdout)
    assert p.stdout.count(f"8 computed, {len(BAD)} failed") == 3, p.stdout

    for spec in ("opensmile:eGeMAPSv02", "opensmile:ComParE_2016"):
        out = tmp_path / f"{spec.split(':')[1]}.csv"
        cli("export", "--workdir", str(wd), "--features", spec, "--out", str(out), env=ENV)
        table = pd.read_csv(out).set_index("id")
        assert list(table.columns[:3]) == ["file", "start", "end"]
        assert table.loc["long@10.25-12", "start"] == 10.25 and table.loc["long@10.25-12", "end"] == 12.0
        assert np.isnan(table.loc["long@35-end", "end"]) and table.loc["cut/seg0", "start"] == 0.0
        feats = table.iloc[:, 3:].to_numpy(float)
        rows = {cid: feats[k] for k, cid in enumerate(table.index)}
        for i in range(len(SEGMENTS)):
            seg, ref = rows[_seg_id(i)], rows[f"cut/seg{i}"]
            np.testing.assert_allclose(seg, ref, rtol=1e-5, atol=0, err_msg=f"{spec} segment {i}")

    sets = json.loads(cli("list", "--workdir", str(wd), "--json").stdout)
    ssl = next(s for s in sets if s["spec"].startswith("ssl:"))
    n_layers = ssl["fields"]["pooled_mean"]["shape"][0]
    for layer in range(n_layers):
        for pooling in ("mean", "max"):
            out = tmp_path / f"ssl_{layer}_{pooling}.npz"
            cli("export", "--workdir", str(wd), "--features", ssl["key"], "--layer", str(layer),
                "--pooling", pooling, "--out", str(out), env=ENV)
            z = np.load(out)
            assert z["files"].shape == z["ids"].shape
            assert np.isnan(z["ends"][list(z["ids"]).index("long@35-end")])
            rows = dict(zip(z["ids"], z["X"].astype(np.float64)))
            for i in range(len(SEGMENTS)):
                a, b = rows[_seg_id(i)], rows[f"cut/seg{i}"]
                cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
                assert cos >= 0.999, (layer, pooling, i, cos)

    v = cli("verify", "--workdir", str(wd), check=3)
    assert "stale (audio changed" not in v.stdout and " missing: " not in v.stdout, v.stdout
    p = cli("extract", "--corpus", str(corpus), "--layout", "csv", "--workdir", str(wd),
            "--features", "opensmile:eGeMAPSv02", check=3, env=ENV)
    assert "8 reused, 0 computed" in p.stdout
