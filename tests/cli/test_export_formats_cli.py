"""``export --format fairseq|hear`` (issue 15 point 6), read back the way those tools read them.

fairseq: emotion2vec's ``iemocap_downstream/data.py`` reads ``<prefix>.npy`` with ``np.load``,
``<prefix>.lengths`` line by line (offsets: the running sum of lengths) and a label file's
second whitespace-separated field. hear-eval-kit's ``SplitMemmapDataset`` opens
``<split>.embeddings.npy`` as ``np.memmap(float32, shape=json(<split>.embedding-dimensions))``,
unpickles ``<split>.target-labels.pkl`` and maps labels through ``labelvocabulary.csv``.
The reference values are the store's own rows.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.demo import make_demo_corpus
from data.workdir import open_corpus
from extract.store import FeatureStore
from tests.extract.conftest import build_tiny_model

from clitools import cli

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PREFIX = {"Train": "train", "Val": "valid", "Test": "test"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(corpus, workdir, model): 18 demo clips, a tiny wav2vec2 (layers 2, 3 pooled, layer 3's
    frames), eGeMAPS functionals; an automatic split (the demo's own Test has no labels, and
    hear-eval-kit scores Test)."""
    base = tmp_path_factory.mktemp("formats")
    corpus = make_demo_corpus(base / "corpus", n_clips=18, seed=3)
    model = build_tiny_model("wav2vec2-group", base / "tiny-w2v2")
    wd = base / "wd"
    cli("extract", "--corpus", str(corpus), "--layout", "avb", "--workdir", str(wd), "--features",
        f"ssl:{model}", "opensmile:eGeMAPSv02", "--layers", "2,3", "--poolings", "mean",
        "--frames-layers", "3", "--device", "cpu", "--workers", "1", "--no-progress",
        "--split", "auto", "--split-stratify", "none", env=ENV)
    return corpus, wd, model


def _emotion2vec_load(prefix: Path, labels: str | None):
    """The reading rule of emotion2vec's ``load_dataset`` (min_length 0): data, sizes,
    offsets and the second field of each label line."""
    data = np.load(str(prefix) + ".npy")
    sizes, offsets, values, offset = [], [], [], 0
    label_lines = (Path(str(prefix) + f".{labels}").read_text().splitlines()
                   if labels else None)
    for i, line in enumerate(Path(str(prefix) + ".lengths").read_text().splitlines()):
        length = int(line.rstrip())
        sizes.append(length)
        offsets.append(offset)
        if label_lines is not None:
            values.append(label_lines[i].rstrip().split()[1])
        offset += length
    return data, sizes, offsets, values


def test_fairseq_frames_lengths_ids_and_labels_equal_the_store(tmp_path, workdir):
    _, wd, model = workdir
    out = tmp_path / "fs"
    p = cli("export", "--workdir", str(wd), "--features", f"ssl:{model}", "--layer", "3",
            "--format", "fairseq", "--label", "Voc_Type,Awe", "--out", str(out))
    assert "fairseq layout" in p.stdout
    store = FeatureStore(wd)
    key = store.find(f"ssl:{model}").key
    corpus = open_corpus(wd)  # the automatic split applied
    seen = []
    for split, prefix in PREFIX.items():
        ids = (out / f"{prefix}.ids").read_text().splitlines()
        assert ids == sorted(corpus.split_ids(split))  # every stored clip of the split, sorted
        seen += ids
        data, sizes, offsets, types = _emotion2vec_load(out / prefix, "Voc_Type")
        _, _, _, awe = _emotion2vec_load(out / prefix, "Awe")
        assert data.dtype == np.float32 and data.ndim == 2 and data.shape[1] == 32
        assert sum(sizes) == len(data)
        for cid, size, offset, t, a in zip(ids, sizes, offsets, types, awe):
            want = store.read_sequence(key, "frames_l3", cid)
            assert size == len(want) > 0
            np.testing.assert_array_equal(data[offset:offset + size], want.astype(np.float32))
            truth = corpus.labels["Voc_Type"].get(cid)
            assert t == ("nan" if pd.isna(truth) else truth)
            truth = corpus.labels["Awe"].get(cid)
            if pd.isna(truth):
                assert a == "nan"
            else:
                assert float(a) == pytest.approx(float(truth), rel=1e-12)
        lines = (out / f"{prefix}.Voc_Type").read_text().splitlines()
        assert [ln.split("\t")[0] for ln in lines] == ids  # each line names its clip
    assert sorted(seen) == sorted(corpus.ids)
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["key"] == key and manifest["field"] == "frames_l3"


def test_fairseq_refuses_a_set_without_frames_and_a_label_with_spaces(tmp_path, workdir):
    _, wd, model = workdir
    p = cli("export", "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02", "--format",
            "fairseq", "--out", str(tmp_path / "x"), check=2)
    assert "frame" in p.stderr and "--frames-layers" in p.stderr
    assert not (tmp_path / "x").exists()
    p = cli("export", "--workdir", str(wd), "--features", f"ssl:{model}", "--format", "fairseq",
            "--label", "Country", "--out", str(tmp_path / "y"), check=2)
    assert "Country" in p.stderr and "whitespace" in p.stderr
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y.*"))


def test_hear_memmaps_and_label_table_as_hear_eval_kit_reads_them(tmp_path, workdir):
    _, wd, model = workdir
    out = tmp_path / "hear"
    p = cli("export", "--workdir", str(wd), "--features", f"ssl:{model}", "--layer", "2",
            "--format", "hear", "--label", "Voc_Type", "--out", str(out))
    store = FeatureStore(wd)
    key = store.find(f"ssl:{model}").key
    corpus = open_corpus(wd)  # the automatic split applied
    metadata = json.loads((out / "task_metadata.json").read_text())
    assert metadata["embedding_type"] == "scene" and metadata["split_mode"] == "trainvaltest"
    vocab = pd.read_csv(out / "labelvocabulary.csv")
    assert len(vocab) == vocab["idx"].max() + 1  # hear-eval-kit's label_vocab_nlabels check
    vocab["label"] = vocab["label"].astype(str)
    label_to_idx = vocab.set_index("label").to_dict()["idx"]
    types = corpus.labels["Voc_Type"]
    assert set(label_to_idx) == set(types.dropna())
    total = 0
    for split in metadata["splits"]:
        dim = tuple(json.loads((out / f"{split}.embedding-dimensions.json").read_text()))
        X = np.memmap(out / f"{split}.embeddings.npy", dtype=np.float32, mode="r", shape=dim)
        labels = pickle.loads((out / f"{split}.target-labels.pkl").read_bytes())
        assert len(labels) == dim[0] == len(X) and X[0].shape[0] == dim[1] == 32
        order = list(json.loads((out / f"{split}.json").read_text()))
        canon = {v: k for k, v in PREFIX.items()}[split]
        assert order == sorted(c for c in corpus.split_ids(canon) if pd.notna(types.get(c)))
        want, _ = store.read(key, "pooled_mean", order, index=0)  # layers (2, 3): 2 is first
        np.testing.assert_array_equal(np.asarray(X), want.astype(np.float32))
        assert [lbl for lbl in labels] == [[types[c]] for c in order]
        assert all(len(lbl) == 1 and str(lbl[0]) in label_to_idx for lbl in labels)
        total += dim[0]
    left = int(types.isna().sum()) + (len(corpus) - len(types))
    assert total == len(corpus) - left
    if left:
        assert f"left out: {left} clip(s) with no label" in p.stdout


def test_hear_needs_a_class_column_and_rewrites_its_own_folder_only(tmp_path, workdir):
    _, wd, _ = workdir
    base = ["export", "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02",
            "--format", "hear"]
    p = cli(*base, "--out", str(tmp_path / "a"), check=2)
    assert "--label COL" in p.stderr and "Voc_Type" in p.stderr
    p = cli(*base, "--label", "Awe", "--out", str(tmp_path / "a"), check=2)
    assert "class column" in p.stderr
    cli(*base, "--label", "Voc_Type", "--out", str(tmp_path / "a"))
    first = json.loads((tmp_path / "a" / "export.json").read_text())
    assert first["field"] == "functionals"
    cli(*base, "--label", "Voc_Type", "--out", str(tmp_path / "a"))  # a rerun replaces it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temporary folder left
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    p = cli(*base, "--label", "Voc_Type", "--out", str(other), check=2)
    assert "not a folder export" in p.stderr
    assert (other / "notes.txt").read_text() == "keep"
