"""The corpus readers (avb, exvo, csv) on small layouts written in tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data.corpora import LAYOUTS, read_corpus, register_layout
from data.corpus import Corpus, CorpusError
from data.tasks import CULTURE_COLUMNS, EMOTIONS


def write_wav(path: Path, seconds: float = 0.1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(16000 * seconds)), 16000, subtype="PCM_16")


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


AVB_IDS = {"10001": "Train", "10002": "Train", "10003": "Val", "10004": "Test"}


def make_avb(root: Path, *, ids: dict[str, str] = AVB_IDS, skip: tuple[str, ...] = (), brackets: bool = True) -> Path:
    """A tiny A-VB release: one label row per id, Test rows with empty labels."""
    for clip_id in ids:
        write_wav(root / "audio" / "wav" / f"{clip_id}.wav")

    def key(clip_id: str, split: str) -> dict:
        return {"File_ID": f"[{clip_id}]" if brackets else clip_id, "Split": split}

    def value(i: int, j: int, split: str) -> float | None:
        return None if split == "Test" else round(0.1 + 0.01 * i + 0.001 * j, 4)

    files = {
        "data_info.csv": lambda i, c, s: {"Subject_ID": f"S{i % 2}", "Country": "" if s == "Test" else ["US", "China", "ZA", "Venezuela"][i % 4], "Age": None if s == "Test" else 20 + i},
        "high_info.csv": lambda i, c, s: {e: value(i, j, s) for j, e in enumerate(EMOTIONS)},
        "two_info.csv": lambda i, c, s: {"Valence": value(i, 0, s), "Arousal": value(i, 1, s)},
        "culture_info.csv": lambda i, c, s: {e: value(i, j, s) for j, e in enumerate(CULTURE_COLUMNS)},
        "type_info.csv": lambda i, c, s: {"Voc_Type": "" if s == "Test" else ["Laugh", "gasp", "Cry", "Scream"][i % 4]},
    }
    for name, fill in files.items():
        if name in skip:
            continue
        rows = [{**key(c, s), **fill(i, c, s)} for i, (c, s) in enumerate(ids.items())]
        write_csv(root / "labels" / name, rows)
    return root


# --- avb ---------------------------------------------------------------------------------


def test_avb_reads_a_release(tmp_path):
    c = read_corpus(make_avb(tmp_path), "avb")
    assert isinstance(c, Corpus) and c.layout == "avb" and len(c) == 4
    assert c.clips.index.name == "clip_id" and list(c.clips.index) == list(AVB_IDS)
    assert list(c.clips.columns) == ["path", "split", "group"]
    assert c.clips.loc["10001", "path"] == str((tmp_path / "audio" / "wav" / "10001.wav").absolute())
    assert list(c.clips["split"]) == ["Train", "Train", "Val", "Test"]
    assert list(c.clips["group"]) == ["S0", "S1", "S0", "S1"]
    assert c.problems == ()
    cols = list(c.labels.columns)
    assert cols[:10] == list(EMOTIONS) and cols[10:12] == ["Valence", "Arousal"]
    assert cols[12:52] == list(CULTURE_COLUMNS)
    assert cols[52:] == ["Voc_Type", "Country", "Age", "Subject_ID"]
    assert c.labels.loc["10002", "Awe"] == pytest.approx(0.11)
    assert c.labels.loc["10002", "China_Surprise"] == pytest.approx(0.119)
    assert c.labels["Awe"].dtype == float and c.labels["Age"].dtype == float
    # codes and odd case normalised
    assert list(c.labels["Country"][:3]) == ["United States", "China", "South Africa"]
    assert list(c.labels["Voc_Type"][:3]) == ["Laugh", "Gasp", "Cry"]
    assert c.split_ids("Train") == ["10001", "10002"] and c.split_ids("dev") == ["10003"]


def test_avb_test_rows_have_nan_labels(tmp_path):
    c = read_corpus(make_avb(tmp_path), "avb")
    test = c.labels.loc["10004"]
    assert test[list(EMOTIONS) + list(CULTURE_COLUMNS) + ["Valence", "Arousal", "Age"]].isna().all()
    assert pd.isna(test["Voc_Type"]) and pd.isna(test["Country"])
    assert test["Subject_ID"] == "S1"


def test_avb_ids_without_brackets(tmp_path):
    c = read_corpus(make_avb(tmp_path, brackets=False), "avb")
    assert list(c.labels.index) == list(AVB_IDS) and c.problems == ()


def test_avb_columns_in_another_order_and_case(tmp_path):
    root = make_avb(tmp_path)
    high = pd.read_csv(root / "labels" / "high_info.csv")
    high = high[list(reversed(high.columns))].rename(columns={"File_ID": "file_id", "Awe": "awe"})
    high.to_csv(root / "labels" / "high_info.csv", index=False)
    info = pd.read_csv(root / "labels" / "data_info.csv")
    info = info[["Country", "Age", "Split", "Subject_ID", "File_ID"]].rename(columns={"Subject_ID": "speaker"})
    info.to_csv(root / "labels" / "data_info.csv", index=False)
    c = read_corpus(root, "avb")
    assert c.labels.loc["10002", "Awe"] == pytest.approx(0.11)
    assert c.labels.loc["10002", "Surprise"] == pytest.approx(0.119)
    assert list(c.clips["group"]) == ["S0", "S1", "S0", "S1"]


def test_avb_label_rows_without_audio_and_audio_without_labels(tmp_path):
    root = make_avb(tmp_path)
    (root / "audio" / "wav" / "10002.wav").unlink()
    write_wav(root / "audio" / "wav" / "20000.wav")
    c = read_corpus(root, "avb")
    assert "20000" in c.clips.index and "10002" not in c.clips.index
    assert c.clips.loc["20000", "split"] == "" and c.clips.loc["20000", "group"] == ""
    assert "20000" not in c.labels.index and "10002" not in c.labels.index
    text = "\n".join(c.problems)
    assert "1 label row(s) have no audio file" in text and "10002" in text
    assert "1 audio file(s) have no label row" in text and "20000" in text
    assert c.split_ids("") == ["20000"]


def test_avb_missing_label_file_makes_task_unavailable(tmp_path):
    c = read_corpus(make_avb(tmp_path, skip=("culture_info.csv",)), "avb")
    assert not set(CULTURE_COLUMNS) & set(c.labels.columns)
    assert any("culture_info.csv not found" in p and "avb-culture" in p for p in c.problems)


def test_avb_split_from_other_files_when_data_info_lacks_a_clip(tmp_path):
    root = make_avb(tmp_path)
    info = pd.read_csv(root / "labels" / "data_info.csv")
    info[info["File_ID"] != "[10003]"].to_csv(root / "labels" / "data_info.csv", index=False)
    c = read_corpus(root, "avb")
    assert c.clips.loc["10003", "split"] == "Val"


def test_avb_required_files_and_folders(tmp_path):
    with pytest.raises(CorpusError, match="data_info.csv"):
        read_corpus(make_avb(tmp_path / "a", skip=("data_info.csv",)), "avb")
    root = make_avb(tmp_path / "b")
    for f in (root / "audio" / "wav").iterdir():
        f.unlink()
    (root / "audio" / "wav").rmdir()
    with pytest.raises(CorpusError, match=r"audio/wav"):
        read_corpus(root, "avb")


def test_avb_missing_required_column_names_column_file_and_columns_found(tmp_path):
    root = make_avb(tmp_path)
    path = root / "labels" / "high_info.csv"
    pd.read_csv(path).drop(columns=["Fear"]).to_csv(path, index=False)
    with pytest.raises(CorpusError) as info:
        read_corpus(root, "avb")
    msg = str(info.value)
    assert "'Fear'" in msg and str(path) in msg and "columns found" in msg and "'Awe'" in msg


def test_avb_identical_duplicate_rows_are_merged(tmp_path):
    root = make_avb(tmp_path)
    path = root / "labels" / "two_info.csv"
    table = pd.read_csv(path)
    pd.concat([table, table.iloc[[1]]]).to_csv(path, index=False)
    c = read_corpus(root, "avb")
    assert len(c.labels) == 4
    assert any("two_info.csv" in p and "10002" in p and "identical" in p for p in c.problems)


def test_avb_conflicting_duplicate_rows_are_an_error(tmp_path):
    root = make_avb(tmp_path)
    path = root / "labels" / "two_info.csv"
    table = pd.read_csv(path)
    extra = table.iloc[[1]].assign(Valence=0.9)
    pd.concat([table, extra]).to_csv(path, index=False)
    with pytest.raises(CorpusError, match=r"'10002'.*lines \[3, 6\]"):
        read_corpus(root, "avb")


def test_avb_out_of_range_and_non_numeric_values(tmp_path):
    root = make_avb(tmp_path)
    path = root / "labels" / "high_info.csv"
    table = pd.read_csv(path)
    table.loc[0, "Awe"] = 1.5
    table.to_csv(path, index=False)
    c = read_corpus(root, "avb")
    assert c.labels.loc["10001", "Awe"] == 1.5
    assert any("outside [0, 1]" in p and "10001/Awe=1.5" in p for p in c.problems)
    table["Horror"] = table["Horror"].astype(object)
    table.loc[2, "Horror"] = "high"
    table.to_csv(path, index=False)
    with pytest.raises(CorpusError, match=r"line 4: column 'Horror' holds 'high'"):
        read_corpus(root, "avb")


def test_avb_unknown_country_and_split_are_noted(tmp_path):
    root = make_avb(tmp_path)
    path = root / "labels" / "data_info.csv"
    table = pd.read_csv(path)
    table.loc[0, "Country"] = "Atlantis"
    table.loc[1, "Split"] = "Holdout"
    table.to_csv(path, index=False)
    c = read_corpus(root, "avb")
    assert c.labels.loc["10001", "Country"] == "Atlantis"
    assert any("Atlantis" in p for p in c.problems) and any("Holdout" in p for p in c.problems)
    assert c.clips.loc["10002", "split"] == "Train"  # the other label files still know it


# --- exvo --------------------------------------------------------------------------------


def make_exvo(root: Path, audio_dir: str = "wav") -> Path:
    rows = []
    for i, (clip_id, split) in enumerate(AVB_IDS.items()):
        write_wav(root / audio_dir / f"{clip_id}.wav")
        test = split == "Test"
        row = {"Age": None if test else 25 + i, "File_ID": f"[{clip_id}]", "Country": None if test else ["USA", "CN", "South Africa", "VE"][i], "Split": split, "Subject_ID": f"P{i}"}
        row.update({e: None if test else 0.5 for e in reversed(EMOTIONS)})
        rows.append(row)
    write_csv(root / "data_info.csv", rows)
    return root


@pytest.mark.parametrize("audio_dir", ["wav", "audio/wav"])
def test_exvo_reads_either_audio_folder(tmp_path, audio_dir):
    c = read_corpus(make_exvo(tmp_path, audio_dir), "exvo")
    assert len(c) == 4 and c.problems == ()
    assert list(c.labels.columns) == [*EMOTIONS, "Country", "Age", "Subject_ID"]
    assert list(c.labels["Country"][:3]) == ["United States", "China", "South Africa"]
    assert c.labels.loc["10002", "Age"] == 26.0
    assert c.labels.loc["10004", list(EMOTIONS)].isna().all()
    assert list(c.clips["group"]) == ["P0", "P1", "P2", "P3"]
    assert c.split_ids("Test") == ["10004"]


def test_exvo_missing_columns(tmp_path):
    root = make_exvo(tmp_path)
    table = pd.read_csv(root / "data_info.csv")
    table.drop(columns=["Age"]).to_csv(root / "data_info.csv", index=False)
    c = read_corpus(root, "exvo")
    assert "Age" not in c.labels.columns and any("['Age']" in p for p in c.problems)
    table.drop(columns=["Split"]).to_csv(root / "data_info.csv", index=False)
    with pytest.raises(CorpusError, match=r"\['Split'\].*columns found"):
        read_corpus(root, "exvo")


def test_exvo_labels_argument_points_to_the_table(tmp_path):
    root = make_exvo(tmp_path)
    (root / "data_info.csv").rename(root / "meta.csv")
    with pytest.raises(CorpusError, match="data_info.csv"):
        read_corpus(root, "exvo")
    assert len(read_corpus(root, "exvo", labels=root / "meta.csv")) == 4


# --- csv ---------------------------------------------------------------------------------


def make_csv_corpus(root: Path, rows: list[dict], name: str = "labels.csv") -> Path:
    for row in rows:
        if row.get("file") and not row.get("_skip_audio"):
            write_wav(root / row["file"])
    write_csv(root / name, [{k: v for k, v in r.items() if k != "_skip_audio"} for r in rows])
    return root


CSV_ROWS = [
    {"file": "spk1/a.wav", "split": "train", "group": "spk1", "mood": "happy", "score": 0.5},
    {"file": "spk1/b.flac", "split": "Valid", "group": "spk1", "mood": "sad", "score": 1.0},
    {"file": "spk2/c.wav", "split": "DEV", "group": "spk2", "mood": "happy", "score": None},
    {"file": "spk2/d.wav", "split": "test", "group": "spk2", "mood": None, "score": None},
    {"file": "e.wav", "split": None, "group": None, "mood": "sad", "score": 2.0},
]


def test_csv_layout(tmp_path):
    c = read_corpus(make_csv_corpus(tmp_path, CSV_ROWS), "csv")
    assert list(c.clips.index) == ["e", "spk1/a", "spk1/b", "spk2/c", "spk2/d"]
    assert c.clips.loc["spk1/a", "split"] == "Train" and c.clips.loc["spk1/b", "split"] == "Val"
    assert c.clips.loc["spk2/c", "split"] == "Val" and c.clips.loc["spk2/d", "split"] == "Test"
    assert c.clips.loc["e", "split"] == "" and c.clips.loc["e", "group"] == ""
    assert c.clips.loc["spk1/b", "path"] == str((tmp_path / "spk1" / "b.flac").absolute())
    assert list(c.labels.columns) == ["mood", "score"]
    assert c.labels["score"].dtype == float and c.labels.loc["e", "score"] == 2.0
    assert c.labels.loc["spk1/a", "mood"] == "happy" and pd.isna(c.labels.loc["spk2/d", "mood"])
    assert c.problems == ()


def test_csv_optional_columns_and_labels_path(tmp_path):
    root = make_csv_corpus(tmp_path, [{"file": "x.wav", "y": 1}, {"file": "z.wav", "y": 2}], name="meta/list.csv")
    c = read_corpus(root, "csv", labels=root / "meta" / "list.csv")
    assert list(c.clips["split"]) == ["", ""] and list(c.labels["y"]) == [1.0, 2.0]
    c2 = read_corpus(root, "csv", labels="meta/list.csv")  # relative to the root
    assert list(c2.clips.index) == ["x", "z"]


def test_csv_missing_files_are_noted(tmp_path):
    rows = CSV_ROWS[:2] + [{"file": "gone.wav", "split": "train", "_skip_audio": True}]
    c = read_corpus(make_csv_corpus(tmp_path, rows), "csv")
    assert c.clips.loc["gone", "path"] == str((tmp_path / "gone.wav").absolute())
    assert c.clips.loc["gone", "split"] == "Train" and "gone" in c.labels.index
    assert any("gone.wav" in p and "do not exist" in p for p in c.problems)


def test_csv_duplicates(tmp_path):
    rows = CSV_ROWS + [dict(CSV_ROWS[0])]
    c = read_corpus(make_csv_corpus(tmp_path / "a", rows), "csv")
    assert len(c) == 5 and any("spk1/a" in p and "identical" in p for p in c.problems)
    rows = CSV_ROWS + [dict(CSV_ROWS[0], score=0.7)]
    with pytest.raises(CorpusError, match=r"'spk1/a' appears on lines \[2, 7\] with different values"):
        read_corpus(make_csv_corpus(tmp_path / "b", rows), "csv")


def test_csv_errors(tmp_path):
    make_csv_corpus(tmp_path, [{"path": "a.wav", "y": 1}])
    with pytest.raises(CorpusError, match=r"\['file'\].*columns found: \['path', 'y'\]"):
        read_corpus(tmp_path, "csv")
    make_csv_corpus(tmp_path, [{"file": "a.wav", "split": "train"}, {"file": "b.wav", "split": "holdout"}])
    with pytest.raises(CorpusError, match=r"line 3: split 'holdout'"):
        read_corpus(tmp_path, "csv")
    with pytest.raises(CorpusError, match="not found"):
        read_corpus(tmp_path, "csv", labels="nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CorpusError, match="empty"):
        read_corpus(tmp_path, "csv", labels="empty.csv")


# --- registry and Corpus -----------------------------------------------------------------


def test_registry():
    assert set(LAYOUTS) >= {"avb", "exvo", "csv"}
    with pytest.raises(ValueError, match="already registered"):
        register_layout("avb")(lambda root, *, labels=None: None)


def test_read_corpus_errors(tmp_path):
    with pytest.raises(CorpusError, match=r"unknown corpus layout 'nope'.*avb"):
        read_corpus(tmp_path, "nope")
    with pytest.raises(CorpusError, match="not a folder"):
        read_corpus(tmp_path / "missing", "avb")


def test_corpus_subset_split_ids_and_summary(tmp_path):
    c = read_corpus(make_avb(tmp_path), "avb")
    sub = c.subset(["10003", "10001"])
    assert list(sub.clips.index) == ["10003", "10001"] and list(sub.labels.index) == ["10003", "10001"]
    assert len(sub) == 2 and sub.split_ids("Train") == ["10001"]
    assert c.summary() == {"Train": 2, "Val": 1, "Test": 1, "unknown": 0, "labelled": 4, "total": 4}
    with pytest.raises(KeyError, match="99999"):
        c.subset(["99999"])
    with pytest.raises(ValueError, match="unknown split 'Holdout'"):
        c.split_ids("Holdout")
