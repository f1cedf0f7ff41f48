"""Task and Target definitions, parsing and resolution against label tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.tasks import (
    COUNTRIES,
    CULTURE_COLUMNS,
    EMOTIONS,
    TASKS,
    VOC_TYPES,
    Target,
    Task,
    TaskError,
    class_name,
    get_task,
    normalise_country,
    normalise_voc_type,
    parse_tasks,
    resolve_task,
    target_array,
)


def labels(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    return pd.DataFrame(cols, index=pd.Index([f"c{i}" for i in range(n)], name="clip_id"))


def test_fixed_tasks():
    assert set(TASKS) == {"avb-high", "avb-two", "avb-culture", "avb-type", "country", "exvo",
                          "iemocap4", "iemocap4:no-merge", "iemocap-vad", "speaker"}
    high = get_task("avb-high")
    assert high.columns == EMOTIONS and len(high.columns) == 10 and high.headline == "ccc"
    assert high.targets[0].value_range == (0.0, 1.0) and high.targets[0].metric == "ccc"
    assert get_task("avb-two").columns == ("Valence", "Arousal")
    culture = get_task("avb-culture").columns
    assert len(culture) == 40 and culture == CULTURE_COLUMNS
    assert culture[:2] == ("China_Awe", "China_Excitement") and culture[10] == "United States_Awe"
    assert culture[-1] == "Venezuela_Surprise"
    typ = get_task("avb-type")
    assert typ.headline == "uar" and typ.targets[0].classes == VOC_TYPES and typ.columns == ("Voc_Type",)
    assert VOC_TYPES == ("Gasp", "Laugh", "Cry", "Scream", "Grunt", "Groan", "Pant", "Other")
    assert get_task("country").targets[0].classes == COUNTRIES


def test_exvo_task():
    exvo = get_task("exvo")
    assert exvo.headline == "exvo"
    kinds = [(t.name, t.kind, t.metric, t.columns) for t in exvo.targets]
    assert kinds == [
        ("emotion", "regression", "ccc", EMOTIONS),
        ("country", "classification", "uar", ("Country",)),
        ("age", "regression", "mae", ("Age",)),
    ]
    assert exvo.target("country").num_outputs == 4 and exvo.target("emotion").num_outputs == 10
    with pytest.raises(KeyError, match="targets"):
        exvo.target("nope")


def test_parametric_tasks():
    r = get_task("regress:a, b")
    assert r.name == "regress:a,b" and r.columns == ("a", "b") and r.headline == "ccc"
    # one target per column, named after it (so a loss or a chain can name the column)
    assert [(t.name, t.columns, t.metric) for t in r.targets] == [("a", ("a",), "ccc"), ("b", ("b",), "ccc")]
    assert get_task("regress:a+b").name == "regress:a,b"
    c = get_task("classify:mood")
    assert c.headline == "uar" and c.columns == ("mood",) and c.targets[0].classes is None
    assert not c.resolved
    with pytest.raises(TaskError, match="exactly one column"):
        get_task("classify:a+b")
    with pytest.raises(TaskError, match="names no column"):
        get_task("regress:")
    with pytest.raises(TaskError, match=r"unknown task 'avb-hihg'.*avb-high"):
        get_task("avb-hihg")


def test_parse_tasks():
    assert [t.name for t in parse_tasks("avb-high,avb-type")] == ["avb-high", "avb-type"]
    assert [t.name for t in parse_tasks(" avb-high , avb-high ")] == ["avb-high"]
    assert [t.name for t in parse_tasks("regress:a,b,avb-type,classify:m")] == ["regress:a,b", "avb-type", "classify:m"]
    assert [t.name for t in parse_tasks(["exvo", "country"])] == ["exvo", "country"]
    with pytest.raises(TaskError, match="no task"):
        parse_tasks(" , ")
    with pytest.raises(TaskError, match="unknown task 'bogus'"):
        parse_tasks("avb-high,bogus")


def test_target_and_task_validation():
    with pytest.raises(TaskError, match="kind"):
        Target("x", "ranking", ("a",), "ccc")
    with pytest.raises(TaskError, match=r"metric 'uar' does not fit kind 'regression'"):
        Target("x", "regression", ("a",), "uar")
    with pytest.raises(TaskError, match="exactly one column"):
        Target("x", "classification", ("a", "b"), "uar")
    with pytest.raises(TaskError, match="no classes"):
        Target("x", "regression", ("a",), "ccc", classes=("p",))
    with pytest.raises(TaskError, match="headline"):
        Task("t", (Target("x", "regression", ("a",), "ccc"),), "f1")
    with pytest.raises(TaskError, match="unique names"):
        Task("t", (Target("x", "regression", ("a",), "ccc"),) * 2, "ccc")


def test_resolve_classify_discovers_classes():
    table = labels(mood=["sad", "happy", None, "sad"], score=[0.1, 0.2, 0.3, np.nan])
    task = resolve_task("classify:mood", table)
    assert task.targets[0].classes == ("happy", "sad") and task.resolved
    np.testing.assert_array_equal(target_array(task.targets[0], table, ["c0", "c1", "c2", "zz"]), [1, 0, -1, -1])
    numeric_classes = labels(grade=[2.0, 10.0, 1.0, np.nan])
    t = resolve_task("classify:grade", numeric_classes)
    assert t.targets[0].classes == ("1", "2", "10")
    np.testing.assert_array_equal(target_array(t.targets[0], numeric_classes, ["c0", "c1", "c3"]), [1, 2, -1])


def test_resolve_regress_and_missing_columns():
    table = labels(score=[0.1, 0.2], mood=["a", "b"])
    task = resolve_task("regress:score", table)
    arr = target_array(task.targets[0], table, ["c1", "c0", "nope"])
    assert arr.dtype == np.float32 and arr.shape == (3, 1)
    np.testing.assert_allclose(arr[:2, 0], [0.2, 0.1], rtol=1e-6)
    assert np.isnan(arr[2, 0])
    with pytest.raises(TaskError, match=r"needs label column\(s\) \['pitch'\].*available columns: \['score', 'mood'\]"):
        resolve_task("regress:score,pitch", table)
    with pytest.raises(TaskError, match=r"\['missing'\]"):
        resolve_task("classify:missing", table)
    with pytest.raises(TaskError, match="classify:mood"):
        resolve_task("regress:mood", table)
    with pytest.raises(TaskError, match="no values"):
        resolve_task("classify:mood", labels(mood=[None, None]))


def test_resolve_fixed_task_keeps_classes():
    table = labels(Voc_Type=["Laugh", "Gasp", "Martian"])
    task = resolve_task(get_task("avb-type"), table)
    assert task.targets[0].classes == VOC_TYPES
    np.testing.assert_array_equal(target_array(task.targets[0], table, ["c0", "c1", "c2"]), [1, 0, -1])
    with pytest.raises(TaskError, match="resolve_task"):
        target_array(get_task("classify:x").targets[0], labels(x=["a"]), ["c0"])


def test_with_classes():
    task = get_task("classify:m").with_classes(["b", "a"])
    assert task.targets[0].classes == ("b", "a")
    assert get_task("exvo").with_classes({"country": ["x", "y"]}).target("country").classes == ("x", "y")
    with pytest.raises(TaskError, match="pass \\{target name"):
        Task("two", (Target("a", "classification", ("a",), "uar"), Target("b", "classification", ("b",), "uar")), "uar").with_classes(["x"])
    with pytest.raises(TaskError, match="not classification targets"):
        get_task("exvo").with_classes({"emotion": ["x"]})


def test_normalisers_and_class_name():
    assert normalise_country("CN") == "China" and normalise_country(" united  states ") == "United States"
    assert normalise_country("SA") == normalise_country("za") == "South Africa"
    assert normalise_country("VE") == "Venezuela" and normalise_country("Peru") is None
    assert normalise_voc_type("laugh") == "Laugh" and normalise_voc_type("sneeze") is None
    assert class_name(1.0) == "1" and class_name(1.5) == "1.5" and class_name(np.nan) is None
    assert class_name(" a ") == "a" and class_name("") is None and class_name(None) is None
