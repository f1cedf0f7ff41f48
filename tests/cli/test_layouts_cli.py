"""The audformat and hf layouts through the real command line.

audformat: --table/--column, bad segments failing by table row (exit 3, the rest stored), the
database's name and version in corpus.json and in the store's provenance, a missing table
refused (exit 2). hf: the features and content hashes of a saved dataset equal those of the
files it was made from read through the csv layout; an undecodable audio cell fails by row.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clitools import cli
from data.audio import file_hash

SPEC = "opensmile:eGeMAPSv02"


def _rows(wd, out) -> dict[str, np.ndarray]:
    cli("export", "--workdir", str(wd), "--features", SPEC, "--out", str(out))
    z = np.load(out)
    return dict(zip(z["ids"], z["X"]))


@pytest.mark.slow
def test_audformat_database(tmp_path):
    pytest.importorskip("audformat")
    from tests.data.test_audformat import build_database

    root = build_database(tmp_path / "tinyvoice")
    wd = tmp_path / "wd"
    p = cli("extract", "--corpus", str(root), "--layout", "audformat", "--table", "turns,emotion.train",
            "--column", "arousal", "--workdir", str(wd), "--features", SPEC, "--workers", "1", check=3)
    assert "6 computed, 3 failed" in p.stdout, p.stdout
    assert "audio/long@9-11: table 'turns' row (audio/long.wav, 9 s, 11 s)" in p.stdout
    assert "audio/long@3.5-end: table 'turns' row (audio/long.wav, 3.5 s, NaT)" in p.stdout
    ref = json.loads((wd / "corpus.json").read_text())
    assert ref["table"] == "turns,emotion.train" and ref["column"] == "arousal"
    assert ref["meta"]["database"]["name"] == "tinyvoice" and ref["meta"]["database"]["version"] == "1.2.0"
    sets = json.loads(cli("list", "--workdir", str(wd), "--json").stdout)
    assert sets[0]["provenance"]["corpus"]["database"]["version"] == "1.2.0"
    cli("export", "--workdir", str(wd), "--features", SPEC, "--out", str(tmp_path / "x.csv"))
    table = pd.read_csv(tmp_path / "x.csv").set_index("id")
    assert list(table.columns[:3]) == ["file", "start", "end"] and len(table) == 6
    assert table.loc["audio/long@2-4.25", "end"] == 4.25
    p = cli("train", "--workdir", str(wd), "--task", "regress:arousal", "--features", SPEC,
            "--head", "ridge", "--run-name", "r")  # reads the corpus back through corpus.json
    p = cli("extract", "--corpus", str(root), "--layout", "audformat", "--table", "emotion.valid",
            "--workdir", str(tmp_path / "w2"), "--features", SPEC, check=2)
    assert "no filewise or segmented table emotion.valid" in p.stderr and "emotion.train" in p.stderr
    p = cli("extract", "--corpus", str(root), "--layout", "audformat", "--column", "valence",
            "--workdir", str(tmp_path / "w2"), "--features", SPEC, check=2)
    assert "no column valence" in p.stderr


@pytest.mark.slow
def test_hf_dataset_equals_its_source_files(tmp_path):
    datasets = pytest.importorskip("datasets")
    from tests.data.test_hf import build_dataset

    root, originals = build_dataset(tmp_path / "hf")
    wd = tmp_path / "wd"
    p = cli("extract", "--corpus", str(root), "--layout", "hf", "--workdir", str(wd),
            "--features", SPEC, "--workers", "1")
    assert "6 computed, 0 failed" in p.stdout
    src = tmp_path / "hf" / "src"
    pd.DataFrame({"file": [f.name for f in originals.values()], "split": "train"}).to_csv(
        src / "labels.csv", index=False)
    cli("extract", "--corpus", str(src), "--layout", "csv", "--workdir", str(tmp_path / "wcsv"),
        "--features", SPEC, "--workers", "1")
    hf_rows, csv_rows = _rows(wd, tmp_path / "a.npz"), _rows(tmp_path / "wcsv", tmp_path / "b.npz")
    for cid, original in originals.items():
        assert np.array_equal(hf_rows[cid], csv_rows[original.stem]), cid

    from extract.store import FeatureStore

    store = FeatureStore(wd)
    done, _ = store.status(next(iter(store.keys())))
    assert done == {cid: file_hash(original) for cid, original in originals.items()}
    cli("train", "--workdir", str(wd), "--task", "classify:emotion", "--features", SPEC,
        "--head", "logreg", "--run-name", "r")

    bad = datasets.Dataset.from_dict(
        {"audio": [{"bytes": originals["train/0"].read_bytes(), "path": "a.wav"},
                   {"bytes": b"not audio at all", "path": "b.wav"}], "y": [1.0, 2.0]},
        features=datasets.Features({
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "y": datasets.Value("float32")})).cast_column("audio", datasets.Audio())
    bad.save_to_disk(str(tmp_path / "bad"))
    p = cli("extract", "--corpus", str(tmp_path / "bad"), "--layout", "hf", "--workdir",
            str(tmp_path / "wbad"), "--features", SPEC, "--workers", "1", check=3)
    assert "1 computed, 1 failed" in p.stdout
    assert "  opensmile:eGeMAPSv02 1: " in p.stdout and "hf_audio/all/row1.wav: cannot decode audio" in p.stdout
