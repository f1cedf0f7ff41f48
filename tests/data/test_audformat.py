"""The audformat layout on a small database built with audformat itself.

Filewise tables per split (split ids of type train/dev/test), a segmented table on a long file,
a filewise speaker table and a misc table; the --table/--column choice; the database's name and
version in the corpus metadata; bad segments failing per clip naming table and row; missing
tables and columns refused naming what exists.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data.corpora import read_corpus
from data.corpus import CorpusError

audformat = pytest.importorskip("audformat")
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")  # audformat on pandas 3

SR = 16000


def build_database(root: Path) -> Path:
    """A database folder: 6 short files, one 10 s file with turns, speakers, three splits."""
    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [f"audio/f{i}.wav" for i in range(6)]
    for f in files:
        sf.write(root / f, 0.1 * rng.standard_normal(SR), SR)
    sf.write(root / "audio/long.wav", 0.1 * rng.standard_normal(10 * SR), SR)

    db = audformat.Database("tinyvoice", source="https://example.org/tinyvoice",
                            meta={"audb": {"root": str(root), "version": "1.2.0", "flavor": {}}})
    db.schemes["emotion"] = audformat.Scheme(labels=["happy", "sad", "neutral"])
    db.schemes["arousal"] = audformat.Scheme("float", minimum=0, maximum=1)
    db.schemes["speaker"] = audformat.Scheme("str")
    db.splits["train"] = audformat.Split("train")
    db.splits["dev"] = audformat.Split("dev")
    db.splits["test"] = audformat.Split("test")
    db.splits["valid"] = audformat.Split()  # type 'other', matched by its name

    def filewise(name, items, split, emotions, arousal):
        db[name] = audformat.Table(audformat.filewise_index(items), split_id=split)
        db[name]["emotion"] = audformat.Column(scheme_id="emotion")
        db[name]["emotion"].set(emotions)
        db[name]["arousal"] = audformat.Column(scheme_id="arousal")
        db[name]["arousal"].set(arousal)

    filewise("emotion.train", files[:3], "train", ["happy", "sad", "happy"], [0.9, 0.2, 0.8])
    filewise("emotion.dev", files[3:5], "dev", ["neutral", "sad"], [0.5, 0.1])
    filewise("emotion.test", files[5:], "test", [None], [np.nan])
    turns = audformat.segmented_index(
        ["audio/long.wav"] * 6,
        [0, 2, 5, 9, 3.5, 7],
        [2, 4.25, 6, 11, pd.NaT, 6.5])  # (9, 11) past the end; (3.5, end) overlaps; (7, 6.5) reversed
    db["turns"] = audformat.Table(turns, split_id="valid")
    db["turns"]["arousal"] = audformat.Column(scheme_id="arousal")
    db["turns"]["arousal"].set([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    db["files"] = audformat.Table(audformat.filewise_index(files + ["audio/long.wav"]))
    db["files"]["speaker"] = audformat.Column(scheme_id="speaker")
    db["files"]["speaker"].set(["s1", "s1", "s2", "s2", "s3", "s3", "s4"])
    db["speakers"] = audformat.MiscTable(pd.Index(["s1", "s2"], name="speaker"))
    db.save(str(root))
    return root


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    return build_database(tmp_path_factory.mktemp("adb") / "tinyvoice")


def test_every_table_filewise_and_segmented(database):
    c = read_corpus(database, "audformat")
    assert set(c.ids) == {f"audio/f{i}" for i in range(6)} | {
        "audio/long", "audio/long@0-2", "audio/long@2-4.25", "audio/long@5-6", "audio/long@9-11",
        "audio/long@3.5-end", "audio/long@7-6.5"}
    split = c.clips["split"]
    assert list(split[[f"audio/f{i}" for i in range(6)]]) == ["Train"] * 3 + ["Val"] * 2 + ["Test"]
    assert split["audio/long@0-2"] == "Val"  # split 'valid' of type other, matched by name
    assert split["audio/long"] == ""  # only in the split-less speaker table
    assert c.clips.loc["audio/f3", "group"] == "s2" and c.clips.loc["audio/long@5-6", "group"] == "s4"
    assert c.labels.loc["audio/f1", "emotion"] == "sad" and c.labels.loc["audio/f1", "arousal"] == pytest.approx(0.2)
    assert pd.isna(c.labels.loc["audio/f5", "emotion"])
    assert c.labels.loc["audio/long@2-4.25", "arousal"] == pytest.approx(0.2)
    assert c.clips.loc["audio/f0", "path"] == str(database / "audio/f0.wav")
    assert c.spans()["audio/long@2-4.25"] == (2.0, 4.25) and c.spans()["audio/long@3.5-end"] == (3.5, None)
    errors = c.clip_errors()
    assert set(errors) == {"audio/long@9-11", "audio/long@3.5-end", "audio/long@7-6.5"}
    assert errors["audio/long@9-11"].startswith("table 'turns' row (audio/long.wav, 9 s, 11 s): ")
    assert "past the end of the file (10 s long)" in errors["audio/long@9-11"]
    assert "overlaps the segment 2 s to 4.25 s of table 'turns' row (audio/long.wav, 2 s, 4.25 s)" in (
        errors["audio/long@3.5-end"])
    assert "not before the end" in errors["audio/long@7-6.5"]
    db = c.meta["database"]
    assert db["name"] == "tinyvoice" and db["version"] == "1.2.0"
    assert db["source"] == "https://example.org/tinyvoice" and len(db["header_blake2b"]) == 32
    assert db["splits"] == {"train": "train", "dev": "dev", "test": "test", "valid": "other"}


def test_table_and_column_choice(database):
    c = read_corpus(database, "audformat", table="emotion.train,emotion.dev", column="emotion")
    assert c.ids == [f"audio/f{i}" for i in range(5)]
    assert list(c.labels.columns) == ["emotion"] and c.clip_errors() == {} and c.spans() == {}
    assert c.meta["database"]["tables"] == ["emotion.train", "emotion.dev"]
    c = read_corpus(database, "audformat", table="turns")
    assert set(c.spans()) == set(c.ids) and len(c) == 6


def test_missing_table_or_column_is_refused_naming_what_exists(database):
    with pytest.raises(CorpusError, match=r"no filewise or segmented table emotion\.val;.*emotion\.train"):
        read_corpus(database, "audformat", table="emotion.val")
    with pytest.raises(CorpusError, match="speakers is a misc table"):
        read_corpus(database, "audformat", table="speakers")
    with pytest.raises(CorpusError, match=r"no column valence in table\(s\) turns; their columns: arousal"):
        read_corpus(database, "audformat", table="turns", column="valence")
    with pytest.raises(CorpusError, match="--table is for the audformat layout"):
        read_corpus(database, "csv", table="turns")
    with pytest.raises(CorpusError, match="db.yaml not found"):
        read_corpus(database / "audio", "audformat")


def test_conflicting_tables_are_refused(tmp_path):
    root = build_database(tmp_path / "db")
    db = audformat.Database.load(str(root))
    db["emotion.again"] = audformat.Table(audformat.filewise_index(["audio/f0.wav"]), split_id="test")
    db["emotion.again"]["emotion"] = audformat.Column(scheme_id="emotion")
    db["emotion.again"]["emotion"].set(["sad"])
    db.save(str(root))
    with pytest.raises(CorpusError, match=r"give clip 'audio/f0' different values in (column 'emotion'|split)"):
        read_corpus(root, "audformat", table="emotion.train,emotion.again")
