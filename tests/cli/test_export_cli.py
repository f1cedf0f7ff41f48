"""``export`` column names and ``--with-labels`` through the CLI, in every format (issue 14
point 10). References: the store's own rows, openSMILE's feature names, the corpus as the
A-VB reader gives it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.corpora import read_corpus
from data.demo import make_demo_corpus
from extract.store import FeatureStore
from tests.extract.conftest import build_tiny_model

from clitools import cli

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(corpus, workdir, model): 16 demo clips, a tiny wav2vec2 (layers 2, 3; mean and std),
    eGeMAPS."""
    base = tmp_path_factory.mktemp("export")
    corpus = make_demo_corpus(base / "corpus", n_clips=16, seed=2)
    model = build_tiny_model("wav2vec2-group", base / "tiny-w2v2")
    wd = base / "wd"
    cli("extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd), "--features",
        f"ssl:{model}", "opensmile:eGeMAPSv02", "--layers", "2,3", "--poolings", "mean,std",
        "--device", "cpu", "--workers", "1", "--no-progress", env=ENV)
    return corpus, wd, model


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"id": str, "split": str, "group": str})
    return pd.read_parquet(path)


@pytest.mark.parametrize("suffix", ["csv", "parquet", "npz"])
def test_ssl_export_names_layer_pooling_index_and_carries_labels(tmp_path, workdir, suffix):
    corpus_dir, wd, model = workdir
    out = tmp_path / f"x.{suffix}"
    cli("export", "--workdir", str(wd), "--features", f"ssl:{model}", "--layer", "3",
        "--pooling", "std", "--with-labels", "--out", str(out))
    store = FeatureStore(wd)
    key = store.find(f"ssl:{model}").key
    corpus = read_corpus(corpus_dir, "avb")
    ids = sorted(corpus.clips.index)
    want_X, _ = store.read(key, "pooled_std", ids, index=1)  # layers (2, 3): position 1 is 3
    other, _ = store.read(key, "pooled_std", ids, index=0)
    names = [f"l3_std_{i}" for i in range(32)]
    label_cols = list(corpus.labels.columns)
    if suffix == "npz":
        z = np.load(out)  # no pickled objects: plain arrays only
        assert list(z["columns"]) == names
        assert list(z["ids"]) == ids
        np.testing.assert_array_equal(z["X"], want_X)
        assert list(z["split"]) == list(corpus.clips.loc[ids, "split"])
        assert list(z["group"]) == [str(g) for g in corpus.clips.loc[ids, "group"]]
        assert list(z["label_columns"]) == label_cols
        np.testing.assert_array_equal(z["label_Awe"], corpus.labels.reindex(ids)["Awe"].to_numpy())
        types = corpus.labels.reindex(ids)["Voc_Type"]
        assert types.isna().any()  # a clip without a label row: '' in a text array
        assert list(z["label_Voc_Type"]) == ["" if pd.isna(v) else v for v in types]
        return
    df = _read(out)
    assert list(df.columns) == ["id", "split", "group", *label_cols, *names]
    assert list(df["id"]) == ids
    np.testing.assert_allclose(df[names].to_numpy(), want_X.astype(np.float32), rtol=1e-6)
    assert not np.allclose(df[names].to_numpy(), other.astype(np.float32))  # not layer 2
    assert list(df["split"]) == list(corpus.clips.loc[ids, "split"])
    assert list(df["group"].astype(str)) == [str(g) for g in corpus.clips.loc[ids, "group"]]
    np.testing.assert_allclose(df["Awe"].to_numpy(), corpus.labels.reindex(ids)["Awe"].to_numpy())
    types = corpus.labels.reindex(ids)["Voc_Type"]
    assert [None if pd.isna(v) else v for v in df["Voc_Type"]] == [
        None if pd.isna(v) else v for v in types]


def test_opensmile_export_keeps_feature_names_and_splits_filter(tmp_path, workdir):
    import opensmile

    _, wd, _ = workdir
    out = tmp_path / "e.csv"
    cli("export", "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02", "--split", "Val",
        "--with-labels", "--out", str(out))
    df = _read(out)
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    assert list(df.columns[-88:]) == list(smile.feature_names)
    assert set(df["split"]) == {"Val"} and len(df) > 0
    assert not any(c.startswith("f0") or c == "f1" for c in df.columns)
