"""Label rules of data/: repeated rows, infinite labels, number-valued classes, constant targets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.corpus import CorpusError, drop_infinite_labels, drop_repeated_rows
from data.tasks import TaskError, check_varied_targets, class_name, get_task, resolve_task


def test_repeated_rows_many_duplicates_keep_first_of_each():
    n_ids, copies = 3000, 10  # 27k repeated rows: the per-id loop this replaces was quadratic
    ids = np.repeat([f"c{i}" for i in range(n_ids)], copies)
    table = pd.DataFrame({"y": np.repeat(np.arange(n_ids) / 7, copies),
                          "t": np.repeat([f"w{i % 5}" for i in range(n_ids)], copies)},
                         index=pd.Index(ids, name="clip_id"))
    out, repeated = drop_repeated_rows(table, np.arange(len(table)) + 2, path=Path("l.csv"))
    assert list(out.index) == [f"c{i}" for i in range(n_ids)]
    assert np.array_equal(out["y"].to_numpy(), np.arange(n_ids) / 7)
    assert len(repeated) == n_ids


def test_repeated_rows_compare_numbers_as_numbers_and_missing_as_equal():
    table = pd.DataFrame({"y": ["0.4115", "0.41150", "1", "1.0"], "z": [None, None, "a", "a"]},
                         index=pd.Index(["a", "a", "b", "b"], name="clip_id"))
    out, repeated = drop_repeated_rows(table, [2, 3, 4, 5], path=Path("l.csv"))
    assert list(out.index) == ["a", "b"] and repeated == ["a", "b"]
    assert out.loc["a", "y"] == "0.4115"  # the first row as written


def test_repeated_rows_with_different_values_name_the_lines():
    table = pd.DataFrame({"y": [1.0, 2.0, 3.0, 1.5]}, index=pd.Index(["a", "b", "c", "a"], name="clip_id"))
    with pytest.raises(CorpusError, match=r"l.csv: clip id 'a' appears on lines \[2, 5\] with different values"):
        drop_repeated_rows(table, [2, 3, 4, 5], path=Path("l.csv"))


def test_no_repeats_returns_the_table_unchanged():
    table = pd.DataFrame({"y": [1.0, 2.0]}, index=pd.Index(["a", "b"], name="clip_id"))
    out, repeated = drop_repeated_rows(table, [2, 3], path=Path("l.csv"))
    assert out is table and repeated == []


def test_infinite_labels_become_missing_with_a_note():
    labels = pd.DataFrame({"y": [1.0, np.inf, -np.inf, np.nan], "t": ["a", "inf", "b", "c"]},
                          index=["a", "b", "c", "d"])
    problems: list[str] = []
    out = drop_infinite_labels(labels, problems=problems)
    assert np.isnan(out["y"].to_numpy()[1:]).all() and out["y"].iloc[0] == 1.0
    assert np.isinf(labels["y"].iloc[1])  # the input is not changed
    assert list(out["t"]) == ["a", "inf", "b", "c"]  # text columns are left alone
    assert len(problems) == 1 and "'y': 2 infinite value(s) (b, c)" in problems[0]


@pytest.mark.parametrize("a, b", [("0.4115", "0.41150"), (0.4115, "0.41150"), ("1", 1.0), ("01", "1"),
                                  ("1e-1", "0.1"), (" x ", "x"),
                                  (np.float32(0.1), "0.1"), (np.int64(3), "3.0")])
def test_class_values_that_are_the_same_number_are_one_class(a, b):
    assert class_name(a) == class_name(b)


def test_class_values_keep_text_and_missing():
    assert class_name("0.4115") != class_name("0.4116")
    assert class_name(float("nan")) is None and class_name("  ") is None
    assert class_name("happy") == "happy" and class_name("inf") == "inf"


def test_classify_on_many_distinct_numbers_is_refused_text_is_not():
    labels = pd.DataFrame({"r": np.linspace(0, 1, 150), "s": [f"spk{i}" for i in range(150)],
                           "k": np.arange(150) % 5 / 2})
    with pytest.raises(TaskError, match=r"column 'r' holds 150 distinct numbers.*regress:r"):
        resolve_task("classify:r", labels)
    assert len(resolve_task("classify:s", labels).target("s").classes) == 150
    assert resolve_task("classify:k", labels).target("k").classes == ("0", "0.5", "1", "1.5", "2")


def test_constant_target_on_a_split_is_refused():
    labels = pd.DataFrame({"a": [0.1, 0.2, 0.5, 0.5, np.nan], "b": [1.0, 2.0, 3.0, 4.0, 5.0]},
                          index=list("vwxyz"))
    task = resolve_task("regress:a,b", labels)
    check_varied_targets(task, labels, list("vwxyz"))
    with pytest.raises(TaskError, match=r"column 'a' is constant on Val \(all 2 labelled Val clips are 0.5\)"):
        check_varied_targets(task, labels, ["x", "y", "z"])
    check_varied_targets(task, labels, [])
    check_varied_targets(get_task("classify:b"), labels, ["x"])  # classification: not a CCC
    exvo = get_task("exvo")  # Age is scored by MAE, defined on a constant target
    ages = pd.DataFrame({c: [1.0, 2.0, 3.0] for c in exvo.columns}, index=list("xyz")).assign(Age=37.0)
    check_varied_targets(exvo, ages, list("xyz"))
