"""The demo corpus: deterministic, in the A-VB layout, with labels tied to the audio."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data.audio import file_hash, load_audio
from data.corpora import read_corpus
from data.demo import make_demo_corpus
from data.tasks import COUNTRIES, CULTURE_COLUMNS, EMOTIONS, VOC_TYPES, get_task, resolve_task

LABEL_FILES = ["culture_info.csv", "data_info.csv", "high_info.csv", "two_info.csv", "type_info.csv"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_corpus(root, n_clips=48, seed=3)
    return root


def tree_hashes(root):
    return {p.relative_to(root).as_posix(): file_hash(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path):
    first = tree_hashes(make_demo_corpus(tmp_path / "a", n_clips=12, seed=3))
    assert tree_hashes(make_demo_corpus(tmp_path / "b", n_clips=12, seed=3)) == first
    assert tree_hashes(make_demo_corpus(tmp_path / "c", n_clips=12, seed=4)) != first


def test_layout(demo):
    assert sorted(p.name for p in (demo / "labels").iterdir()) == LABEL_FILES
    wavs = sorted((demo / "audio" / "wav").iterdir())
    assert len(wavs) == 48
    for name in LABEL_FILES:
        table = pd.read_csv(demo / "labels" / name, dtype=str)
        assert list(table.columns[:2]) == ["File_ID", "Split"]
        assert table["File_ID"].str.fullmatch(r"\[\d+\]").all()
    info = pd.read_csv(demo / "labels" / "data_info.csv")
    assert {"Subject_ID", "Age", "Country"} <= set(info.columns)
    for wav in wavs:
        meta = sf.info(wav)
        assert meta.samplerate == 16000 and meta.channels == 1 and meta.subtype == "PCM_16"
        assert 0.5 <= meta.duration <= 3.0


def test_readable_by_the_avb_reader(demo):
    c = read_corpus(demo, "avb")
    assert len(c) == 48 and c.problems == ()
    assert set(c.clips["split"]) == {"Train", "Val", "Test"}
    counts = c.clips["split"].value_counts()
    assert 0.35 < counts["Train"] / 48 < 0.65 and counts["Val"] >= 6 and counts["Test"] >= 6
    # split by subject: no subject in two splits
    assert (c.clips.groupby("group")["split"].nunique() == 1).all()
    assert set(c.labels["Voc_Type"].dropna()) == set(VOC_TYPES)
    assert set(c.labels["Country"].dropna()) == set(COUNTRIES)
    labelled = c.labels.loc[c.split_ids("Train") + c.split_ids("Val")]
    test = c.labels.loc[c.split_ids("Test")]
    cols = [*EMOTIONS, "Valence", "Arousal", *CULTURE_COLUMNS]
    assert labelled[cols].notna().all().all() and test[cols + ["Age", "Country", "Voc_Type"]].isna().all().all()
    values = labelled[cols].to_numpy()
    assert values.min() >= 0.0 and values.max() <= 1.0 and values.std() > 0.1
    assert labelled["Age"].between(20, 39).all()
    for name in ("avb-high", "avb-two", "avb-culture", "avb-type", "country", "exvo"):
        resolve_task(get_task(name), c.labels)


def test_all_types_with_the_fewest_clips(tmp_path):
    c = read_corpus(make_demo_corpus(tmp_path, n_clips=8), "avb")
    assert set(c.clips["split"]) == {"Train", "Val", "Test"}
    assert len(c.labels["Voc_Type"].dropna()) + len(c.split_ids("Test")) == 8


def test_labels_follow_the_audio(tmp_path):
    # Arousal rises with loudness and pitch by construction; loudness alone must show it.
    c = read_corpus(make_demo_corpus(tmp_path, n_clips=48, seed=1), "avb")
    ids = c.split_ids("Train") + c.split_ids("Val")
    level = [10 * np.log10(np.mean(load_audio(c.clips.loc[i, "path"]) ** 2)) for i in ids]
    assert np.corrcoef(level, c.labels.loc[ids, "Arousal"])[0, 1] > 0.5  # 0.76 for this seed


def test_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least 8"):
        make_demo_corpus(tmp_path / "x", n_clips=3)
    root = make_demo_corpus(tmp_path / "y", n_clips=8, seed=0)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_demo_corpus(root, n_clips=8)
    make_demo_corpus(root, n_clips=9, seed=1, overwrite=True)
    assert len(list((root / "audio" / "wav").iterdir())) == 9
