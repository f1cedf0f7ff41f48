"""The iemocap layout on a tiny IEMOCAP-shaped release written in tmp_path, and its tasks."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data.corpora import LAYOUTS, read_corpus
from data.corpora.iemocap import parse_utterance
from data.corpus import CorpusError
from data.tasks import get_task, parse_tasks, resolve_task, target_array

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cli"))

# (utterance, code, [v, a, d], transcript or None for "no transcription line")
UTTERANCES = [
    ("Ses01F_impro01_F000", "neu", (2.5, 2.5, 2.5), "Excuse me."),
    ("Ses01F_impro01_M000", "exc", (4.0, 3.5, 3.0), "Do you have your forms?"),
    ("Ses01F_impro01_F001", "xxx", (2.0, 2.5, 2.5), "Yeah. [LAUGHTER]"),
    ("Ses01F_impro01_M001", "ang", (1.5, 4.0, 4.0), "You have to go back."),
    ("Ses01M_script01_1_F000", "sad", (2.0, 1.5, 2.0), "I miss him."),
    ("Ses01M_script01_1_M000", "hap", (4.5, 3.0, 3.0), None),
    ("Ses01M_script01_1_M001", "fru", (2.0, 3.5, 3.5), "Whatever."),
    ("Ses02F_impro02_F000", "hap", (4.0, 3.0, 3.0), "That's great."),
    ("Ses02F_impro02_M000", "neu", (3.0, 2.0, 2.5), "Okay."),
    ("Ses02F_impro02_M001", "sad", (1.5, 2.0, 2.0), "I know."),
    ("Ses02M_script02_1_F000", "ang", (1.5, 4.5, 4.0), "Get out!"),
    ("Ses02M_script02_1_F001", "exc", (4.5, 4.0, 3.5), "We won!"),
    ("Ses02M_script02_1_M000", "neu", (3.0, 2.5, 3.0), "Fine."),
]
NO_WAV = "Ses02M_script02_1_M001"  # labelled, transcribed, but its wav is missing


def _tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_iemocap(root: Path, *, junk: bool = True) -> Path:
    """A two-session IEMOCAP release: 4 speakers, 13 wavs, EmoEvaluation and transcripts.

    With ``junk``: AppleDouble files, header/evaluator/stray lines, an ``xxx`` utterance (always
    there), a label line without a wav, an utterance without a transcription line, an ``XX``
    transcription entry, a malformed transcription line and an evaluation subfolder.
    """
    release = root / "IEMOCAP_full_release"
    dialogs: dict[str, list[tuple]] = {}
    for i, (utt, code, vad, text) in enumerate(UTTERANCES):
        dialog, _ = utt.rsplit("_", 1)
        dialogs.setdefault(dialog, []).append((utt, code, vad, text))
        session = release / f"Session{int(utt[3:5])}"
        wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, _tone(0.6 + 0.05 * i, 150 + 20 * i), 16000, subtype="PCM_16")
    dialogs["Ses02M_script02_1"].append((NO_WAV, "sad", (2.0, 2.0, 2.0), "Goodbye."))
    for dialog, rows in dialogs.items():
        session = release / f"Session{int(dialog[3:5])}"
        emo = session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        trans = session / "dialog" / "transcriptions" / f"{dialog}.txt"
        emo.parent.mkdir(parents=True, exist_ok=True)
        trans.parent.mkdir(parents=True, exist_ok=True)
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        tlines = []
        for k, (utt, code, vad, text) in enumerate(rows):
            start, end = 1.0 + 3 * k, 2.5 + 3 * k
            lines.append(f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]")
            if junk:
                lines += ["C-E2:\tNeutral;\t()", "C-E3:\tNeutral; Frustration;\t()",
                          "A-E3:\tval 3; act 2; dom  2;\t()", "A-F1:\tval 3; act 2; dom  2;\t()"]
            lines.append("")
            if text is not None:
                tlines.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {text}")
        if junk and dialog == "Ses01F_impro01":
            lines.insert(3, "this line is not an utterance")
            tlines.append("Ses01F_impro01_MXX0 [010.0000-011.0000]: [BREATHING]")
            tlines.append("M: a line without times")
        emo.write_text("\n".join(lines) + "\n")
        trans.write_text("\n".join(tlines) + "\n")
    if junk:
        s1 = release / "Session1"
        (s1 / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07junk")
        (s1 / "sentences" / "wav" / "Ses01F_impro01" / "._Ses01F_impro01_F000.wav").write_bytes(b"\x00\x05\x16\x07")
        (s1 / "dialog" / "transcriptions" / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05")
        cat = s1 / "dialog" / "EmoEvaluation" / "Categorical"
        cat.mkdir()
        (cat / "Ses01F_impro01_e2_cat.txt").write_text("Ses01F_impro01_F000 :Neutral state; ()\n")
    return release


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    return make_iemocap(tmp_path / "corpus")


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, speaker, session, dialog, mode",
    [
        ("Ses01F_impro01_M003", "01M", "01", "Ses01F_impro01", "improvised"),
        ("Ses01F_impro01_F003", "01F", "01", "Ses01F_impro01", "improvised"),
        ("Ses03M_script01_2_F011", "03F", "03", "Ses03M_script01_2", "scripted"),
        ("Ses05M_impro03b_M000", "05M", "05", "Ses05M_impro03b", "improvised"),
        ("Ses05F_script02_1b_F010", "05F", "05", "Ses05F_script02_1b", "scripted"),
    ],
)
def test_speaker_is_session_plus_the_utterances_own_gender(name, speaker, session, dialog, mode):
    u = parse_utterance(name)
    assert (u.speaker, u.session, u.dialog, u.mode) == (speaker, session, dialog, mode)
    assert u.gender == speaker[-1]


@pytest.mark.parametrize("name", ["Ses01F_impro01_MXX0", "Ses01F_impro01", "notes", "Ses1F_impro01_M000", ""])
def test_non_utterance_names_are_refused(name):
    assert parse_utterance(name) is None


# --- reader ------------------------------------------------------------------------------


def test_reads_the_release(release):
    c = read_corpus(release, "iemocap")
    assert "iemocap" in LAYOUTS and c.layout == "iemocap"
    wavs = [u for u, *_ in UTTERANCES]
    assert sorted(c.ids) == sorted(wavs)  # NO_WAV left out, AppleDouble wav skipped
    assert c.clips.loc["Ses01F_impro01_M000", "path"] == str(
        release / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_M000.wav")
    assert set(c.clips["split"]) == {""}
    speakers = {u: f"{u[3:5]}{u.rsplit('_', 1)[1][0]}" for u in wavs}
    assert c.clips["group"].to_dict() == speakers
    assert sorted(set(speakers.values())) == ["01F", "01M", "02F", "02M"]
    lab = c.labels
    assert lab["speaker"].to_dict() == speakers
    assert set(lab.columns) >= {"emotion", "emotion4", "emotion4_nomerge", "valence", "activation",
                                "dominance", "speaker", "gender", "session", "dialog", "mode", "text"}
    for utt, code, vad, text in UTTERANCES:
        row = lab.loc[utt]
        assert row["emotion"] == code
        assert (row["valence"], row["activation"], row["dominance"]) == pytest.approx(vad)
        assert row["session"] == utt[3:5] and row["dialog"] == utt.rsplit("_", 1)[0]
        assert row["mode"] == ("improvised" if "_impro" in utt else "scripted")
        if text is None:
            assert pd.isna(row["text"])
        else:
            assert row["text"] == text
    for col in ("valence", "activation", "dominance"):
        assert lab[col].dtype == float


def test_label_mapping_merge_and_no_merge(release):
    lab = read_corpus(release, "iemocap").labels
    merged = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
    unmerged = {k: v for k, v in merged.items() if k != "exc"}
    for utt, code, _, _ in UTTERANCES:
        got, got_nm = lab.loc[utt, "emotion4"], lab.loc[utt, "emotion4_nomerge"]
        assert (got if isinstance(got, str) else None) == merged.get(code), utt
        assert (got_nm if isinstance(got_nm, str) else None) == unmerged.get(code), utt
    assert lab.loc["Ses01F_impro01_F001", "emotion"] == "xxx"
    assert pd.isna(lab.loc["Ses01F_impro01_F001", "emotion4"])


def test_every_oddity_is_counted_and_named(release):
    problems = "\n".join(read_corpus(release, "iemocap").problems)
    assert "3 macOS '._*' file(s) skipped" in problems
    # 4 evaluator lines per utterance line, 14 utterance lines
    assert "56 per-evaluator line(s)" in problems
    assert "1 EmoEvaluation line(s) that are not utterance lines skipped" in problems
    assert "Ses01F_impro01.txt:4 'this line is not an utterance'" in problems
    assert "1 utterance(s) without a majority label (xxx)" in problems
    assert "1 label row(s) have no audio file" in problems and NO_WAV in problems
    assert "1 transcription line(s) not of the form" in problems
    assert "1 utterance(s) without a transcription line" in problems
    assert "Ses01M_script01_1_M000" in problems


def test_clean_release_has_only_the_xxx_note(tmp_path):
    release = make_iemocap(tmp_path, junk=False)
    problems = read_corpus(release, "iemocap").problems
    assert [p for p in problems if "xxx" not in p and NO_WAV not in p
            and "without a transcription line" not in p] == []


def test_parent_folder_works_and_missing_release_is_explained(release, tmp_path):
    assert len(read_corpus(release.parent, "iemocap")) == len(UTTERANCES)
    with pytest.raises(CorpusError, match="Session1..Session5"):
        read_corpus(tmp_path, "iemocap")
    with pytest.raises(CorpusError, match="drop --labels"):
        read_corpus(release, "iemocap", labels=release / "x.csv")


def test_no_utterance_line_is_an_error(tmp_path):
    eval_dir = tmp_path / "Session1" / "dialog" / "EmoEvaluation"
    eval_dir.mkdir(parents=True)
    (eval_dir / "Ses01F_impro01.txt").write_text("% header only\n")
    with pytest.raises(CorpusError, match="no utterance line"):
        read_corpus(tmp_path, "iemocap")


def test_bad_ratings_conflicts_and_latin1_do_not_crash(release):
    emo = release / "Session2" / "dialog" / "EmoEvaluation" / "Ses02F_impro02.txt"
    text = emo.read_text()
    text += "[20.0 - 21.0]\tSes02F_impro02_F000\tang\t[1.0, 1.0, 1.0]\n"  # conflicting repeat
    text = text.replace("[3.0000, 2.0000, 2.5000]", "[3.0, high, 2.5]")  # Ses02F_impro02_M000
    text = text.replace("[1.5000, 2.0000, 2.0000]", "[1.5, 2.0, 7.0]")  # Ses02F_impro02_M001
    emo.write_text(text)
    trans = release / "Session2" / "dialog" / "transcriptions" / "Ses02F_impro02.txt"
    trans.write_bytes(trans.read_bytes().replace(b"Okay.", b"Ol\xe9."))
    c = read_corpus(release, "iemocap")
    problems = "\n".join(c.problems)
    assert c.labels.loc["Ses02F_impro02_F000", "emotion"] == "hap"  # first line kept
    assert "1 utterance line(s) repeating an utterance with other labels" in problems
    assert np.isnan(c.labels.loc["Ses02F_impro02_M000", "valence"])
    assert "not three numbers" in problems and "outside [1, 5]" in problems
    assert c.labels.loc["Ses02F_impro02_M001", "dominance"] == 7.0
    assert c.labels.loc["Ses02F_impro02_M000", "text"] == "Olé."
    assert "read as Latin-1" in problems


# --- tasks -------------------------------------------------------------------------------


def test_iemocap_tasks_resolve_and_map_labels(release):
    c = read_corpus(release, "iemocap")
    ids = [u for u, *_ in UTTERANCES]
    four = resolve_task("iemocap4", c.labels)
    assert four.targets[0].classes == ("neutral", "happy", "sad", "angry")
    codes = {"neu": 0, "hap": 1, "exc": 1, "sad": 2, "ang": 3}
    want = [codes.get(code, -1) for _, code, _, _ in UTTERANCES]
    assert target_array(four.targets[0], c.labels, ids).tolist() == want
    nomerge = resolve_task("iemocap4:no-merge", c.labels)
    want_nm = [-1 if code == "exc" else w for (_, code, _, _), w in zip(UTTERANCES, want)]
    assert target_array(nomerge.targets[0], c.labels, ids).tolist() == want_nm
    vad = resolve_task("iemocap-vad", c.labels)
    assert vad.columns == ("valence", "activation", "dominance")
    np.testing.assert_allclose(target_array(vad.targets[0], c.labels, ids), [v for _, _, v, _ in UTTERANCES])
    spk = resolve_task("speaker", c.labels)
    assert spk.targets[0].classes == ("01F", "01M", "02F", "02M")
    assert [t.name for t in parse_tasks("iemocap4,iemocap4:no-merge,iemocap-vad,speaker")] == [
        "iemocap4", "iemocap4:no-merge", "iemocap-vad", "speaker"]
    assert get_task("iemocap4").headline == "uar"


# --- text column in the csv layout -------------------------------------------------------


def test_csv_text_column(tmp_path):
    from data.corpora import with_text_column

    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", _tone(0.2, 200), 16000)
    pd.DataFrame({"file": ["a.wav", "b.wav"], "words": ["hello there", "42"], "text": ["x", "1"]}).to_csv(
        tmp_path / "labels.csv", index=False)
    c = read_corpus(tmp_path, "csv")
    assert c.labels["text"].tolist() == ["x", "1"]  # never turned into numbers
    with pytest.raises(CorpusError, match="already has a 'text' column"):
        read_corpus(tmp_path, "csv", text_column="words")
    pd.DataFrame({"file": ["a.wav", "b.wav"], "words": ["hello there", "42"]}).to_csv(
        tmp_path / "labels.csv", index=False)
    c = read_corpus(tmp_path, "csv", text_column="words")
    assert c.labels["text"].tolist() == ["hello there", "42"] and "words" not in c.labels
    with pytest.raises(CorpusError, match="'nope' is not a label column"):
        read_corpus(tmp_path, "csv", text_column="nope")
    assert with_text_column(c, "text").labels["text"].tolist() == ["hello there", "42"]


# --- the real command line ---------------------------------------------------------------


@pytest.mark.slow
def test_extract_and_list_through_the_cli(release, tmp_path):
    from clitools import cli

    wd = tmp_path / "wd"
    p = cli("extract", "--corpus", str(release), "--layout", "iemocap", "--workdir", str(wd),
            "--features", "opensmile:eGeMAPSv02", "--workers", "1", "--no-progress")
    assert f"{len(UTTERANCES)} clips" in p.stdout and "0 failed" in p.stdout
    out = cli("list", "--workdir", str(wd), "--json").stdout
    (info,) = json.loads(out)
    assert info["spec"] == "opensmile:eGeMAPSv02" and info["rows"] == len(UTTERANCES)
    assert info["failed"] == 0
    ref = json.loads((wd / "corpus.json").read_text())
    assert ref["layout"] == "iemocap" and "text_column" not in ref
    from data.workdir import open_corpus

    c = open_corpus(wd)
    assert c.labels.loc["Ses01F_impro01_F000", "text"] == "Excuse me."


@pytest.mark.slow
def test_text_column_flag_is_remembered(tmp_path):
    from clitools import cli

    from data.workdir import open_corpus

    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", _tone(0.7, 220), 16000)
    pd.DataFrame({"file": ["a.wav", "b.wav"], "words": ["hi", "bye"], "y": [0.1, 0.2]}).to_csv(
        tmp_path / "labels.csv", index=False)
    wd = tmp_path / "wd"
    cli("extract", "--corpus", str(tmp_path), "--layout", "csv", "--text-column", "words",
        "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02", "--workers", "1", "--no-progress")
    assert open_corpus(wd).labels["text"].tolist() == ["hi", "bye"]
    p = cli("extract", "--corpus", str(tmp_path), "--layout", "csv", "--text-column", "nope",
            "--workdir", str(tmp_path / "wd2"), "--features", "opensmile:eGeMAPSv02", check=2)
    assert "'nope' is not a label column" in p.stderr + p.stdout
