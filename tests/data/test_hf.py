"""The hf layout on a DatasetDict built and saved with ``datasets`` itself.

The audio bytes are written out unchanged under the workdir, so the project's loader and hash
see the very file the dataset was made from (same hash, same samples after resampling);
ClassLabel, number and text columns become labels; splits come from the DatasetDict; a row
without audio fails naming its row; missing packages, columns and folders are refused clearly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data.audio import file_hash, load_audio
from data.corpora import read_corpus
from data.corpus import CorpusError

datasets = pytest.importorskip("datasets")


def build_dataset(tmp: Path) -> tuple[Path, dict[str, Path]]:
    """A DatasetDict (train 3 rows, validation 2, test 1) and the audio files it was made from."""
    src = tmp / "src"
    src.mkdir(parents=True)
    rng = np.random.default_rng(1)
    originals = {
        "train/0": (src / "a.wav", 16000, 1, "PCM_16"),
        "train/1": (src / "b.flac", 44100, 2, "PCM_16"),
        "train/2": (src / "c.wav", 22050, 1, "FLOAT"),
        "validation/0": (src / "d.wav", 16000, 1, "PCM_24"),
        "validation/1": (src / "e.ogg", 48000, 1, "VORBIS"),
        "test/0": (src / "f.wav", 8000, 1, "PCM_16"),
    }
    for path, rate, ch, subtype in originals.values():
        x = 0.2 * rng.standard_normal((rate, ch))
        sf.write(path, x if ch > 1 else x[:, 0], rate, subtype=subtype)

    def part(keys, labels, arousal, speakers):
        cells = [{"bytes": originals[k][0].read_bytes(), "path": originals[k][0].name} for k in keys]
        ds = datasets.Dataset.from_dict(
            {"audio": cells, "emotion": labels, "arousal": arousal, "speaker": speakers,
             "text": [f"utt {k}" for k in keys], "embedding": [[0.1, 0.2]] * len(keys)},
            features=datasets.Features({
                "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                "emotion": datasets.ClassLabel(names=["happy", "sad"]),
                "arousal": datasets.Value("float32"), "speaker": datasets.Value("string"),
                "text": datasets.Value("string"),
                "embedding": datasets.Sequence(datasets.Value("float32"))}))
        return ds.cast_column("audio", datasets.Audio())

    dd = datasets.DatasetDict({
        "train": part(["train/0", "train/1", "train/2"], [0, 1, 0], [0.5, 0.25, 0.75], ["s1", "s1", "s2"]),
        "validation": part(["validation/0", "validation/1"], [1, 0], [0.125, 1.0], ["s3", "s3"]),
        "test": part(["test/0"], [-1], [None], ["s4"]),
    })
    root = tmp / "dataset"
    dd.save_to_disk(str(root))
    return root, {k: v[0] for k, v in originals.items()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("hf"))


def test_audio_is_written_out_unchanged_and_decoded_by_the_project_loader(tmp_path, dataset):
    root, originals = dataset
    c = read_corpus(root, "hf", workdir=tmp_path / "wd")
    assert c.ids == ["test/0", "train/0", "train/1", "train/2", "validation/0", "validation/1"]
    for cid, original in originals.items():
        written = Path(c.clips.loc[cid, "path"])
        assert written.is_relative_to(tmp_path / "wd" / "hf_audio")
        assert written.suffix == original.suffix
        assert file_hash(written) == file_hash(original)
        assert np.array_equal(load_audio(written), load_audio(original))
    assert dict(c.clips["split"]) == {"train/0": "Train", "train/1": "Train", "train/2": "Train",
                                      "validation/0": "Val", "validation/1": "Val", "test/0": "Test"}
    assert c.clips.loc["validation/1", "group"] == "s3"
    assert list(c.labels.columns) == ["emotion", "arousal", "text"]  # the list column is skipped
    assert c.labels.loc["train/1", "emotion"] == "sad" and c.labels.loc["train/2", "arousal"] == 0.75
    assert np.isnan(c.labels.loc["test/0", "arousal"]) and c.labels["emotion"].isna()["test/0"]
    assert any("'embedding'" in p and "skipped" in p for p in c.problems)
    assert c.meta["dataset"]["splits"]["train"]["rows"] == 3

    mtimes = {p: Path(p).stat().st_mtime_ns for p in c.clips["path"]}
    again = read_corpus(root, "hf", workdir=tmp_path / "wd", column="arousal")
    assert list(again.labels.columns) == ["arousal"]
    assert {p: Path(p).stat().st_mtime_ns for p in again.clips["path"]} == mtimes  # not rewritten


def test_id_column_and_missing_audio_and_undecodable_bytes(tmp_path, dataset):
    _, originals = dataset
    good = originals["train/0"].read_bytes()
    ds = datasets.Dataset.from_dict(
        {"clip_id": ["x1", "x2", "x3", "x4"],
         "audio": [{"bytes": good, "path": "x1.wav"}, None,
                   {"bytes": b"this is not audio", "path": "x3.wav"},
                   {"bytes": None, "path": str(originals["train/1"])}],
         "split": ["train", "dev", "test", "train"]},
        features=datasets.Features({
            "clip_id": datasets.Value("string"),
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "split": datasets.Value("string")}))
    root = tmp_path / "single"
    ds.cast_column("audio", datasets.Audio()).save_to_disk(str(root))
    c = read_corpus(root, "hf", workdir=tmp_path / "wd")
    assert c.ids == ["x1", "x2", "x3", "x4"]
    assert list(c.clips["split"]) == ["Train", "Val", "Test", "Train"]
    assert c.clip_errors() == {"x2": "the dataset row 1 ('audio'): the audio cell holds neither "
                                     "bytes nor a path; fix the dataset or drop the row"}
    assert file_hash(c.clips.loc["x4", "path"]) == file_hash(originals["train/1"])  # embedded on save
    from data.audio import AudioError

    with pytest.raises(AudioError, match="cannot decode audio"):
        load_audio(c.clips.loc["x3", "path"])


def test_refusals(tmp_path, dataset):
    root, _ = dataset
    with pytest.raises(CorpusError, match="no column valence; its columns: emotion, arousal, speaker"):
        read_corpus(root, "hf", workdir=tmp_path, column="valence")
    with pytest.raises(CorpusError, match="give --workdir"):
        read_corpus(root, "hf")
    with pytest.raises(CorpusError, match="not a dataset saved with save_to_disk"):
        read_corpus(tmp_path, "hf", workdir=tmp_path / "wd")
    with pytest.raises(CorpusError, match="--table is for the audformat layout"):
        read_corpus(root, "hf", workdir=tmp_path, table="x")
    plain = datasets.Dataset.from_dict({"x": [1, 2]})
    plain.save_to_disk(str(tmp_path / "noaudio"))
    with pytest.raises(CorpusError, match="has no Audio column; columns: x"):
        read_corpus(tmp_path / "noaudio", "hf", workdir=tmp_path / "wd")


def test_missing_package_says_what_to_install(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name in ("datasets", "audformat"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(CorpusError, match=r"pip install datasets \(or pip install -e '\.\[hf\]'\)"):
        read_corpus(tmp_path, "hf", workdir=tmp_path)
    (tmp_path / "db.yaml").write_text("name: x\n")
    with pytest.raises(CorpusError, match=r"pip install audformat \(or pip install -e '\.\[audformat\]'\)"):
        read_corpus(tmp_path, "audformat")
