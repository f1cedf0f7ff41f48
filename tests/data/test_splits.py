"""The automatic split (data/splits.py): group-disjoint, stratified, seeded, and its file."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.corpora import read_corpus
from data.corpus import Corpus
from data.splits import (NO_STRATUM, SplitError, apply_split, auto_split, check_fractions,
                         check_split, read_split, strata, write_split)


def corpus_of(groups: list[str], labels: dict[str, list]) -> Corpus:
    idx = pd.Index([f"c{i:03d}" for i in range(len(groups))], name="clip_id")
    clips = pd.DataFrame({"path": "", "split": "", "group": groups}, index=idx)
    return Corpus(root=".", layout="csv", clips=clips, labels=pd.DataFrame(labels, index=idx))


def roles_per_group(corpus: Corpus, split) -> dict[str, set[str]]:
    roles: dict[str, set[str]] = {}
    for cid, g in corpus.clips["group"].items():
        roles.setdefault(g, set()).add(split.split[cid])
    return roles


def test_single_class_speakers_split_exactly_in_proportion():
    """20 speakers x 5 clips; 10 speak only 'a', 10 only 'b'. A 60/20/20 split that keeps both
    classes in proportion exists (6+6, 2+2, 2+2 speakers): it must be found."""
    groups = [f"s{i // 5:02d}" for i in range(100)]
    mood = ["a" if i // 5 < 10 else "b" for i in range(100)]
    c = corpus_of(groups, {"mood": mood})
    s = auto_split(c, seed=3, fractions=(0.6, 0.2, 0.2))
    assert all(len(r) == 1 for r in roles_per_group(c, s).values())  # group-disjoint
    t = s.table()
    assert t.loc["Train"].to_dict() == {"clips": 60, "groups": 12, "a": 30, "b": 30}
    assert t.loc["Val"].to_dict() == {"clips": 20, "groups": 4, "a": 10, "b": 10}
    assert t.loc["Test"].to_dict() == {"clips": 20, "groups": 4, "a": 10, "b": 10}


def test_uneven_groups_stay_disjoint_and_close_to_the_class_shares():
    rng = np.random.default_rng(0)
    sizes = rng.integers(2, 12, size=40)
    groups = [f"spk{g}" for g, n in enumerate(sizes) for _ in range(n)]
    # each speaker leans to one class; three classes of unequal size
    mood = [["x", "y", "z"][min(2, int(rng.random() * 3 * (1 + (g % 3 == 0))) % 3)]
            for g, n in enumerate(sizes) for _ in range(n)]
    c = corpus_of(groups, {"mood": mood})
    s = auto_split(c, seed=1)
    assert all(len(r) == 1 for r in roles_per_group(c, s).values())
    t = s.table()
    total = t.sum()
    for split, share in zip(("Train", "Val", "Test"), (0.7, 0.15, 0.15)):
        assert abs(t.loc[split, "clips"] / total["clips"] - share) < 0.03
        for cls in ("x", "y", "z"):
            # each class's share in the split is within 5 points of the split's share
            assert abs(t.loc[split, cls] / total[cls] - share) < 0.05, (split, cls, t)


def test_the_seed_decides_and_the_same_seed_repeats():
    groups = [f"s{i // 4}" for i in range(80)]
    c = corpus_of(groups, {"mood": ["a", "b", "c", "d"] * 20})
    a, b, other = auto_split(c, seed=7), auto_split(c, seed=7), auto_split(c, seed=8)
    assert dict(a.split) == dict(b.split)
    assert dict(a.split) != dict(other.split)


def test_numeric_column_is_stratified_by_quartiles():
    values = np.linspace(0, 1, 100)
    c = corpus_of([f"s{i}" for i in range(100)], {"arousal": values})
    st, binned = strata(c, "arousal")
    assert binned and st.value_counts().to_dict() == {"q1": 25, "q2": 25, "q3": 25, "q4": 25}
    t = auto_split(c, stratify="arousal", fractions=(0.6, 0.2, 0.2)).table()
    assert t.loc["Val", ["q1", "q2", "q3", "q4"]].tolist() == [5, 5, 5, 5]


def test_clips_without_group_or_label_are_their_own_group_and_stratum():
    c = corpus_of(["", "", "", "", "", ""], {"mood": ["a", None, "a", "b", "b", "a"]})
    s = auto_split(c, fractions=(0.5, 0.25, 0.25))
    assert s.group_source == "none" and set(s.group.values()) == set(c.ids)
    assert "each clip on its own" in s.describe()
    assert s.stratum["c001"] == NO_STRATUM
    assert all(v > 0 for v in s.counts().values())  # every split got a clip
    c = corpus_of(["g", "g", "", "", "", ""], {"mood": ["a", "a", "a", "b", "b", "a"]})
    s = auto_split(c, fractions=(0.5, 0.25, 0.25))
    assert s.group_source == "group" and s.split["c000"] == s.split["c001"]
    assert s.group["c002"] == "c002"


def test_too_few_groups_and_bad_fractions_are_refused():
    c = corpus_of(["a", "a", "b", "b"], {"mood": ["x", "y", "x", "y"]})
    with pytest.raises(SplitError, match="2 group"):
        auto_split(c)
    assert auto_split(c, fractions=(0.5, 0.5, 0.0)).counts() == {"Train": 2, "Val": 2, "Test": 0}
    for bad in ([0.5, 0.5], [0.7, 0.2, 0.2], [1.0, 0.0, 0.0], [0.5, -0.1, 0.6]):
        with pytest.raises(SplitError):
            check_fractions(bad)
    with pytest.raises(SplitError, match="not a label column"):
        auto_split(c, stratify="nope")


def test_split_file_round_trip_and_check(tmp_path):
    c = corpus_of([f"s{i // 2}" for i in range(20)], {"mood": ["a", "b"] * 10})
    s = auto_split(c)
    path = write_split(tmp_path, s)
    mtime = path.stat().st_mtime_ns
    assert write_split(tmp_path, s).stat().st_mtime_ns == mtime  # unchanged: not rewritten
    applied = apply_split(c, read_split(tmp_path, fix="FIX"))
    assert applied.summary()["Train"] == s.counts()["Train"]
    check_split(applied, fix="FIX")
    with pytest.raises(SplitError, match="add a column `split`.*\n  FIX"):
        check_split(c, fix="FIX")
    with pytest.raises(SplitError, match="missing.*\n  FIX"):
        read_split(tmp_path / "elsewhere", fix="FIX")


def test_csv_speaker_column_is_the_group_not_a_label(tmp_path):
    (tmp_path / "labels.csv").write_text("file,speaker,mood\na.wav,s1,x\nb.wav,s2,y\n")
    c = read_corpus(tmp_path, "csv")
    assert c.clips["group"].tolist() == ["s1", "s2"]
    assert list(c.labels.columns) == ["mood"]
    (tmp_path / "labels.csv").write_text("file,speaker,talker,mood\na.wav,s1,t1,x\nb.wav,s2,t2,y\n")
    c = read_corpus(tmp_path, "csv", group_column="talker")
    assert c.clips["group"].tolist() == ["t1", "t2"]
    assert list(c.labels.columns) == ["speaker", "mood"]
