"""Cross-validation folds: leave-one-out, test-group, validation rules, EmoBox files."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data.corpora import read_corpus
from data.corpus import Corpus
from data.folds import (
    ROLES,
    Fold,
    FoldError,
    ValRule,
    leave_one_out,
    make_folds,
    read_emobox_folds,
    read_folds,
    write_folds,
)
from data.folds import test_group as hold_out_group
from tests.data.test_iemocap import make_iemocap


def iemocap_like(sessions: int = 5, per_speaker: int = 3) -> Corpus:
    """A clip table shaped like IEMOCAP: ``sessions`` x 2 speakers x ``per_speaker`` clips."""
    ids, spk, ses = [], [], []
    for s in range(1, sessions + 1):
        for g in "FM":
            for k in range(per_speaker):
                ids.append(f"Ses{s:02d}F_impro01_{g}{k:03d}")
                spk.append(f"{s:02d}{g}")
                ses.append(f"{s:02d}")
    idx = pd.Index(ids, name="clip_id")
    clips = pd.DataFrame({"path": [f"/x/{i}.wav" for i in ids], "split": "", "group": spk}, index=idx)
    labels = pd.DataFrame({"speaker": spk, "session": ses, "emotion": "neu"}, index=idx)
    return Corpus(root=Path("/x"), layout="iemocap", clips=clips, labels=labels)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Corpus:
    return read_corpus(make_iemocap(tmp_path_factory.mktemp("iemocap")), "iemocap")


def roles_of_speakers(corpus: Corpus, fold: Fold) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for clip, role in fold.split.items():
        out.setdefault(corpus.labels.at[clip, "speaker"], set()).add(role)
    return out


def assert_speakers_disjoint(corpus: Corpus, fold: Fold) -> None:
    roles = roles_of_speakers(corpus, fold)
    assert all(len(r) == 1 for r in roles.values()), roles
    assert fold.shared_speakers == ()


# --- the paper's protocols on an IEMOCAP-shaped table -------------------------------------


def test_leave_one_session_out_gives_5_folds_and_partners_fall_back_to_next_session():
    c = iemocap_like()
    folds = make_folds(c, "leave-one-out:session")
    assert [f.name for f in folds] == [f"session={s:02d}" for s in range(1, 6)]
    for k, f in enumerate(folds, start=1):
        test_sessions = {c.labels.at[i, "session"] for i in f.ids("Test")}
        val_sessions = {c.labels.at[i, "session"] for i in f.ids("Val")}
        assert test_sessions == {f"{k:02d}"}
        assert val_sessions == {f"{k % 5 + 1:02d}"}  # 5 wraps to 1
        assert f.val_rule == "partner->next-session" and f.val_groups == (f"{k % 5 + 1:02d}",)
        assert f.counts() == {"Train": 18, "Val": 6, "Test": 6}
        assert_speakers_disjoint(c, f)
    tests = [set(f.ids("Test")) for f in folds]
    assert set().union(*tests) == set(c.ids) and sum(map(len, tests)) == len(c)


def test_leave_one_speaker_out_gives_10_folds_val_is_the_session_partner():
    c = iemocap_like()
    folds = leave_one_out(c, "speaker")
    assert len(folds) == 10
    for f in folds:
        (held,) = f.test_groups
        partner = held[:2] + ("M" if held[2] == "F" else "F")
        assert {c.labels.at[i, "speaker"] for i in f.ids("Test")} == {held}
        assert {c.labels.at[i, "speaker"] for i in f.ids("Val")} == {partner}
        assert f.val_rule == "partner" and f.counts() == {"Train": 24, "Val": 3, "Test": 3}
        assert_speakers_disjoint(c, f)


def test_the_papers_fold_trains_on_9_speakers_and_tests_on_01F():
    c = iemocap_like()
    (f,) = make_folds(c, "test-group:01F")
    assert f.name == "speaker=01F" and f.source == "test-group:speaker=01F"
    roles = roles_of_speakers(c, f)
    assert {s for s, r in roles.items() if r == {"Test"}} == {"01F"}
    assert {s for s, r in roles.items() if r == {"Val"}} == {"01M"}
    assert len([s for s, r in roles.items() if r == {"Train"}]) == 8
    # the 9 training speakers of the paper are Train + Val
    assert len([s for s, r in roles.items() if r <= {"Train", "Val"}]) == 9


@pytest.mark.parametrize(
    "rule, held, val_speakers",
    [
        ("next-group", "01F", {"01M"}),
        ("next-group", "01M", {"02F"}),
        ("next-group", "05M", {"01F"}),
        ("next-session", "01F", {"02F", "02M"}),
        ("next-session", "05M", {"01F", "01M"}),
        ("none", "03F", set()),
    ],
)
def test_named_validation_rules(rule, held, val_speakers):
    c = iemocap_like()
    (f,) = make_folds(c, f"test-group:speaker={held}", val=rule)
    assert {c.labels.at[i, "speaker"] for i in f.ids("Val")} == val_speakers
    assert f.val_rule == rule
    assert_speakers_disjoint(c, f)
    assert len(f.split) == len(c)


def test_group_column_works_without_a_speaker_column():
    c = iemocap_like()
    c = Corpus(root=c.root, layout="csv", clips=c.clips, labels=c.labels.drop(columns=["speaker", "session"]))
    (f,) = make_folds(c, "test-group:02M", val="next-group")
    assert f.column == "group" and set(f.ids("Test")) == set(c.clips.index[c.clips["group"] == "02M"])
    assert {c.clips.at[i, "group"] for i in f.ids("Val")} == {"03F"}
    with pytest.raises(FoldError, match="needs a 'session' label column.*--cv-val next-group"):
        make_folds(c, "test-group:02M")  # partner needs sessions


# --- on the tiny IEMOCAP tree read from disk ----------------------------------------------


def test_folds_on_the_tiny_tree(tiny):
    folds = make_folds(tiny, "leave-one-out:speaker")
    assert [f.name for f in folds] == ["speaker=01F", "speaker=01M", "speaker=02F", "speaker=02M"]
    for f in folds:
        assert_speakers_disjoint(tiny, f)
        assert set(f.split) == set(tiny.ids)
        assert all(r in ROLES for r in f.split.values())
    f = folds[0]
    assert set(f.ids("Test")) == {"Ses01F_impro01_F000", "Ses01F_impro01_F001", "Ses01M_script01_1_F000"}
    assert {tiny.labels.at[i, "speaker"] for i in f.ids("Val")} == {"01M"}
    assert {tiny.labels.at[i, "session"] for i in f.ids("Train")} == {"02"}
    sessions = make_folds(tiny, "leave-one-out:session", val="none")
    assert [s.counts() for s in sessions] == [{"Train": 6, "Val": 0, "Test": 7}, {"Train": 7, "Val": 0, "Test": 6}]


def test_a_rule_that_leaves_no_train_is_refused(tiny):
    # two sessions only: session 01 held out, its "next session" would take all the rest
    with pytest.raises(FoldError, match="leaves no Train clip.*--cv-val next-group or --cv-val none"):
        make_folds(tiny, "leave-one-out:session")


def test_apply_gives_a_corpus_whose_splits_are_the_fold(tiny):
    (f,) = make_folds(tiny, "test-group:02F")
    sub = f.apply(tiny)
    assert sub.split_ids("Test") == f.ids("Test") and sub.split_ids("Val") == f.ids("Val")
    assert sub.split_ids("Train") == f.ids("Train")
    assert list(sub.labels.index) == [i for i in sub.ids if i in tiny.labels.index]
    assert set(tiny.clips["split"]) == {""}  # the original is untouched
    other = Fold("x", {"nope": "Train"})
    with pytest.raises(FoldError, match="lacks"):
        other.apply(tiny)


def test_fold_is_read_only_and_checks_roles():
    f = Fold("a", {"c1": "Train", "c2": "Test"})
    with pytest.raises(TypeError):
        f.split["c1"] = "Test"  # type: ignore[index]
    with pytest.raises(FoldError, match="roles must be"):
        Fold("b", {"c1": "train"})  # type: ignore[dict-item]
    with pytest.raises(FoldError, match="role must be one of"):
        f.ids("Dev")  # type: ignore[arg-type]


def test_write_then_read(tmp_path, tiny):
    folds = make_folds(tiny, "leave-one-out:speaker")
    write_folds(tmp_path / "folds.json", folds)
    back = read_folds(tmp_path / "folds.json")
    assert [b.to_dict() for b in back] == [f.to_dict() for f in folds]
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(FoldError, match="not a version-1 fold file"):
        read_folds(tmp_path / "bad.json")
    with pytest.raises(FoldError, match="not found"):
        read_folds(tmp_path / "none.json")


@pytest.mark.parametrize(
    "spec, val, match",
    [
        ("leave-one-out:nope", "partner", r"no column 'nope'.*available: \['group', 'emotion'"),
        ("test-group:09F", "partner", r"no clip has speaker = '09F'.*01F, 01M, 02F, 02M"),
        ("test-group:dialog=Ses09", "partner", r"no clip has dialog = 'Ses09'"),
        ("kfold:5", "partner", r"not one of \['leave-one-out:<column>'"),
        ("leave-one-out", "partner", "not one of"),
        ("leave-one-out:speaker", "random", r"unknown validation rule 'random'.*'partner', 'next-session'"),
        ("leave-one-out:gender", "none", None),  # F/M: two folds
        ("leave-one-out:text", "none", None),
    ],
)
def test_clear_errors(tiny, spec, val, match):
    if match is None:
        folds = make_folds(tiny, spec, val=val)
        assert folds
        return
    with pytest.raises(FoldError, match=match):
        make_folds(tiny, spec, val=val)


def test_a_column_with_one_value_cannot_make_folds():
    c = iemocap_like(sessions=1)
    with pytest.raises(FoldError, match="at least two values of 'session'"):
        make_folds(c, "leave-one-out:session")


def test_shared_speakers_are_recorded(tiny, caplog):
    folds = make_folds(tiny, "leave-one-out:mode", val="none")
    assert [f.name for f in folds] == ["mode=improvised", "mode=scripted"]
    assert all(f.shared_speakers == ("01F", "01M", "02F", "02M") for f in folds)
    assert "more than one of Train/Val/Test" in caplog.text


# --- EmoBox ------------------------------------------------------------------------------


def write_emobox(folder: Path, corpus: Corpus, *, fold: int, test_sessions: set[str],
                 valid_speakers: set[str] = frozenset(), fmt: str = "jsonl") -> None:
    """EmoBox-style fold files for ``corpus``: keys ``iemocap-<utt>``, wav paths, emo codes."""
    d = folder / f"fold_{fold}"
    d.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    for utt in corpus.labels.index:
        row = corpus.labels.loc[utt]
        if row["emotion4"] is None or pd.isna(row["emotion4"]):
            continue
        role = "test" if row["session"] in test_sessions else (
            "valid" if row["speaker"] in valid_speakers else "train")
        entries[role].append({
            "key": f"iemocap-{utt}", "dataset": "iemocap",
            "wav": f"downloads/iemocap/Session{int(row['session'])}/sentences/wav/{row['dialog']}/{utt}.wav",
            "type": "raw", "sample_rate": 16000, "emo": row["emotion"], "channel": 1})
    entries["train"].append({"key": "iemocap-Ses09F_impro01_F000", "dataset": "iemocap",
                             "wav": "downloads/iemocap/Session9/x/Ses09F_impro01_F000.wav", "emo": "neu"})
    for role, items in entries.items():
        if not items:
            continue
        path = d / f"iemocap_{role}_fold_{fold}.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(json.dumps(e) + "\n" for e in items))
        else:
            path.write_text(json.dumps({e.pop("key"): e for e in items}, indent=4))


def test_emobox_folds_import(tmp_path, tiny, caplog):
    folder = tmp_path / "EmoBox" / "data" / "iemocap"
    write_emobox(folder, tiny, fold=1, test_sessions={"01"})
    write_emobox(folder, tiny, fold=2, test_sessions={"02"}, fmt="json")
    folds = make_folds(tiny, f"emobox:{folder}", val="next-group")
    assert [f.name for f in folds] == ["emobox-fold_1", "emobox-fold_2"]
    four = set(tiny.labels.index[tiny.labels["emotion4"].notna()])
    f1, f2 = folds
    assert set(f1.split) == four  # xxx/fru utterances are not in the files
    assert {tiny.labels.at[i, "session"] for i in f1.ids("Test")} == {"01"}
    assert {tiny.labels.at[i, "speaker"] for i in f1.ids("Val")} == {"02F"}  # after 01F, 01M
    assert {tiny.labels.at[i, "speaker"] for i in f1.ids("Train")} == {"02M"}
    assert {tiny.labels.at[i, "speaker"] for i in f2.ids("Val")} == {"01F"}  # wraps round
    for f in folds:
        assert_speakers_disjoint(tiny, f)
    assert "1 entr(ies) match no clip" in caplog.text and "Ses09F_impro01_F000" in caplog.text
    assert read_emobox_folds(folder / "fold_1", tiny, val="next-group")[0].split == f1.split


def test_emobox_valid_file_is_used_and_bad_files_are_explained(tmp_path, tiny):
    folder = tmp_path / "iemocap"
    write_emobox(folder, tiny, fold=1, test_sessions={"01"}, valid_speakers={"02M"})
    (f,) = read_emobox_folds(folder, tiny)
    assert f.val_rule == "emobox-valid"
    assert {tiny.labels.at[i, "speaker"] for i in f.ids("Val")} == {"02M"}
    assert {tiny.labels.at[i, "speaker"] for i in f.ids("Train")} == {"02F"}
    # default rule on a whole-session test fold with only two sessions: no Train would remain
    (folder / "fold_1" / "iemocap_valid_fold_1.jsonl").unlink()
    with pytest.raises(FoldError, match="leaves no Train clip"):
        read_emobox_folds(folder, tiny)
    test_file = folder / "fold_1" / "iemocap_test_fold_1.jsonl"
    train_file = folder / "fold_1" / "iemocap_train_fold_1.jsonl"
    train_file.write_text(train_file.read_text() + test_file.read_text().splitlines()[0] + "\n")
    with pytest.raises(FoldError, match="listed as both Train and Test"):
        read_emobox_folds(folder, tiny, val="none")
    train_file.write_text("{not json\n")
    with pytest.raises(FoldError, match="line 1 is not a JSON object"):
        read_emobox_folds(folder, tiny, val="none")
    test_file.unlink()
    with pytest.raises(FoldError, match="has no test file"):
        read_emobox_folds(folder, tiny, val="none")
    with pytest.raises(FoldError, match="not found"):
        read_emobox_folds(tmp_path / "missing", tiny)
    other = tmp_path / "other" / "fold_1"
    other.mkdir(parents=True)
    (other / "x_train_fold_1.jsonl").write_text(json.dumps({"key": "x-1", "wav": "a/1.wav"}) + "\n")
    (other / "x_test_fold_1.jsonl").write_text(json.dumps({"key": "x-2", "wav": "a/2.wav"}) + "\n")
    with pytest.raises(FoldError, match="none of the 2 entries"):
        read_emobox_folds(other.parent, tiny)


def test_val_rule_names():
    assert [r.value for r in ValRule] == ["partner", "next-session", "next-group", "none"]
    assert ValRule.parse("next-group") is ValRule.NEXT_GROUP and ValRule.parse(ValRule.NONE) is ValRule.NONE
    assert hold_out_group(iemocap_like(), "02F").val_groups == ("02",)
