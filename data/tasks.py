"""What to predict: tasks, their targets, and the label vocabulary of HUME-VB.

A :class:`Task` is one or more :class:`Target` s plus the name of its headline score. Fixed tasks
live in :data:`TASKS`; two parametric forms serve any corpus read with the ``csv`` layout:

* ``regress:COL[,COL...]`` (or ``regress:A+B``): regression on numeric columns, mean CCC; one
  target per column, named after it (so ``--loss ccc,arousal=mse`` names a column).
* ``classify:COL``: classification of one column, UAR; classes come from the data
  (:func:`resolve_task`).

Example:
    >>> [t.name for t in parse_tasks("avb-high,avb-type")]
    ['avb-high', 'avb-type']
    >>> get_task("avb-two").columns
    ('Valence', 'Arousal')

One concept, at length: what a task predicts (its targets, classes, metrics and label
vocabulary), fixed tasks and the parametric ``regress:``/``classify:`` forms together.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

EMOTIONS = (
    "Awe",
    "Excitement",
    "Amusement",
    "Awkwardness",
    "Fear",
    "Horror",
    "Distress",
    "Triumph",
    "Sadness",
    "Surprise",
)
"""The 10 emotions of A-VB High and ExVo, in release column order."""

COUNTRIES = ("China", "United States", "South Africa", "Venezuela")
"""HUME-VB countries, in the A-VB culture column order."""

VOC_TYPES = ("Gasp", "Laugh", "Cry", "Scream", "Grunt", "Groan", "Pant", "Other")
"""A-VB Type classes."""

CULTURE_COLUMNS = tuple(f"{c}_{e}" for c in COUNTRIES for e in EMOTIONS)
"""The 40 A-VB Culture columns ``<Country>_<Emotion>``."""

TWO_COLUMNS = ("Valence", "Arousal")

IEMOCAP4_CLASSES = ("neutral", "happy", "sad", "angry")
"""The usual 4-class IEMOCAP set (seed 004), in class-index order."""

IEMOCAP_VAD = ("valence", "activation", "dominance")
"""IEMOCAP's dimensional ratings (1 to 5), as the ``iemocap`` layout names its columns."""

KINDS = ("regression", "classification")
METRICS = {"ccc": "regression", "mae": "regression", "uar": "classification"}
HEADLINES = ("ccc", "uar", "mae", "exvo")

_COUNTRY_ALIASES = {
    "cn": "China",
    "chn": "China",
    "china": "China",
    "us": "United States",
    "usa": "United States",
    "united states": "United States",
    "united states of america": "United States",
    "unitedstates": "United States",
    "za": "South Africa",
    "sa": "South Africa",
    "zaf": "South Africa",
    "south africa": "South Africa",
    "southafrica": "South Africa",
    "ve": "Venezuela",
    "ven": "Venezuela",
    "venezuela": "Venezuela",
}


class TaskError(ValueError):
    """A task name or definition is invalid, or the labels cannot serve it."""


def normalise_country(value: object) -> str | None:
    """Map a country code or name of a HUME-VB release to its name.

    Args:
        value: e.g. ``"US"``, ``"USA"``, ``"united states"``, ``"ZA"``.

    Returns:
        One of :data:`COUNTRIES`, or None when the value is not recognised.

    Example:
        >>> normalise_country("ZA"), normalise_country("usa"), normalise_country("Mars")
        ('South Africa', 'United States', None)
    """
    key = " ".join(str(value).replace("_", " ").split()).casefold()
    return _COUNTRY_ALIASES.get(key)


def normalise_voc_type(value: object) -> str | None:
    """Map a vocalisation type in any case to its A-VB spelling, or None if unknown."""
    key = str(value).strip().casefold()
    for name in VOC_TYPES:
        if name.casefold() == key:
            return name
    return None


@dataclass(frozen=True)
class Target:
    """One thing to predict: a block of regression columns or one class column.

    Attributes:
        name: short name, unique within its task (e.g. ``emotion``, ``country``).
        kind: ``regression`` or ``classification``.
        columns: label columns; a classification target has exactly one.
        metric: ``ccc`` or ``mae`` for regression, ``uar`` for classification.
        classes: class names (classification); None until resolved from data.
        value_range: known range of regression values, e.g. ``(0.0, 1.0)`` for emotions.
    """

    name: str
    kind: str
    columns: tuple[str, ...]
    metric: str
    classes: tuple[str, ...] | None = None
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TaskError(f"target {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.columns:
            raise TaskError(f"target {self.name!r}: needs at least one label column")
        if METRICS.get(self.metric) != self.kind:
            allowed = [m for m, k in METRICS.items() if k == self.kind]
            raise TaskError(
                f"target {self.name!r}: metric {self.metric!r} does not fit kind {self.kind!r}; "
                f"use one of {allowed}"
            )
        if self.kind == "classification":
            if len(self.columns) != 1:
                raise TaskError(
                    f"target {self.name!r}: a classification target has exactly one column, "
                    f"got {list(self.columns)}"
                )
            if self.classes is not None and len(set(self.classes)) != len(self.classes):
                raise TaskError(f"target {self.name!r}: duplicate classes in {list(self.classes)}")
        elif self.classes is not None:
            raise TaskError(f"target {self.name!r}: a regression target has no classes")

    @property
    def num_outputs(self) -> int:
        """Width of a prediction: number of columns, or of classes (0 if unresolved)."""
        if self.kind == "regression":
            return len(self.columns)
        return len(self.classes or ())


@dataclass(frozen=True)
class Task:
    """A named set of targets scored together.

    Attributes:
        name: the name used on the command line (``avb-high``, ``classify:label``, ...).
        targets: what to predict.
        headline: how the task score is made: ``ccc`` (mean CCC over all regression columns),
            ``uar``, ``mae``, or ``exvo`` (harmonic mean of emotion CCC, country UAR, 1/age MAE).
        description: one line for listings.
    """

    name: str
    targets: tuple[Target, ...]
    headline: str
    description: str = ""

    def __post_init__(self) -> None:
        if self.headline not in HEADLINES:
            raise TaskError(f"task {self.name!r}: headline must be one of {HEADLINES}, got {self.headline!r}")
        names = [t.name for t in self.targets]
        if not names or len(set(names)) != len(names):
            raise TaskError(f"task {self.name!r}: needs targets with unique names, got {names}")

    @property
    def columns(self) -> tuple[str, ...]:
        """Every label column the task reads, in target order."""
        return tuple(c for t in self.targets for c in t.columns)

    @property
    def resolved(self) -> bool:
        """True when every classification target knows its classes."""
        return all(t.kind != "classification" or t.classes is not None for t in self.targets)

    def target(self, name: str) -> Target:
        """The target called ``name``.

        Raises:
            KeyError: no such target (names the ones there are).
        """
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"task {self.name!r} has no target {name!r}; targets: {[t.name for t in self.targets]}")

    def with_classes(self, classes: Mapping[str, Sequence[str]] | Sequence[str]) -> Task:
        """A copy with class lists filled in.

        Args:
            classes: ``{target name: classes}``, or just the classes when the task has exactly
                one classification target.

        Returns:
            The updated task.

        Raises:
            TaskError: a name is not a classification target of this task, or a bare list is
                given to a task with several classification targets.
        """
        cls_targets = [t for t in self.targets if t.kind == "classification"]
        if not isinstance(classes, Mapping):
            if len(cls_targets) != 1:
                raise TaskError(
                    f"task {self.name!r} has {len(cls_targets)} classification targets; "
                    "pass {target name: classes}"
                )
            classes = {cls_targets[0].name: classes}
        known = {t.name for t in cls_targets}
        unknown = sorted(set(classes) - known)
        if unknown:
            raise TaskError(f"task {self.name!r}: {unknown} are not classification targets; have {sorted(known)}")
        targets = tuple(
            replace(t, classes=tuple(str(c) for c in classes[t.name])) if t.name in classes else t
            for t in self.targets
        )
        return replace(self, targets=targets)


def _emotion_range() -> tuple[float, float]:
    return (0.0, 1.0)


def _fixed_tasks() -> dict[str, Task]:
    tasks = [
        Task(
            "avb-high",
            (Target("high", "regression", EMOTIONS, "ccc", value_range=_emotion_range()),),
            "ccc",
            "A-VB High: intensity of 10 emotions, mean CCC",
        ),
        Task(
            "avb-two",
            (Target("two", "regression", TWO_COLUMNS, "ccc"),),
            "ccc",
            "A-VB Two: valence and arousal, mean CCC",
        ),
        Task(
            "avb-culture",
            (Target("culture", "regression", CULTURE_COLUMNS, "ccc", value_range=_emotion_range()),),
            "ccc",
            "A-VB Culture: 10 emotions as rated in 4 countries (40 columns), mean CCC",
        ),
        Task(
            "avb-type",
            (Target("type", "classification", ("Voc_Type",), "uar", classes=VOC_TYPES),),
            "uar",
            "A-VB Type: 8 vocal burst types, UAR",
        ),
        Task(
            "country",
            (Target("country", "classification", ("Country",), "uar", classes=COUNTRIES),),
            "uar",
            "Speaker country (4 classes), UAR",
        ),
        Task(
            "exvo",
            (
                Target("emotion", "regression", EMOTIONS, "ccc", value_range=_emotion_range()),
                Target("country", "classification", ("Country",), "uar", classes=COUNTRIES),
                Target("age", "regression", ("Age",), "mae"),
            ),
            "exvo",
            "ExVo multitask: emotions (CCC), country (UAR), age (MAE); harmonic-mean score",
        ),
        # IEMOCAP (layout iemocap): the merge of excited into happy is the option that the
        # task name carries; the two versions read the two columns the reader writes.
        Task(
            "iemocap4",
            (Target("emotion", "classification", ("emotion4",), "uar", classes=IEMOCAP4_CLASSES),),
            "uar",
            "IEMOCAP 4 classes: neutral, happy (+ excited merged), sad, angry; UAR",
        ),
        Task(
            "iemocap4:no-merge",
            (Target("emotion", "classification", ("emotion4_nomerge",), "uar", classes=IEMOCAP4_CLASSES),),
            "uar",
            "IEMOCAP 4 classes without the merge (excited utterances left out); UAR",
        ),
        Task(
            "iemocap-vad",
            (Target("vad", "regression", IEMOCAP_VAD, "ccc", value_range=(1.0, 5.0)),),
            "ccc",
            "IEMOCAP valence, activation, dominance ratings (1-5), mean CCC",
        ),
        Task(
            "speaker",
            (Target("speaker", "classification", ("speaker",), "uar"),),
            "uar",
            "speaker identity (column speaker; classes from the data), UAR",
        ),
    ]
    return {t.name: t for t in tasks}


TASKS: dict[str, Task] = _fixed_tasks()
"""The fixed tasks by name."""

PARAMETRIC = ("regress:", "classify:")


def _split_columns(text: str) -> list[str]:
    return [c.strip() for c in text.replace("+", ",").split(",") if c.strip()]


def _parametric(name: str, columns: list[str]) -> Task:
    prefix = name.split(":", 1)[0] + ":"
    if not columns:
        raise TaskError(f"task {name!r} names no column; write e.g. {prefix}COLUMN")
    if prefix == "regress:":
        if len(set(columns)) != len(columns):
            raise TaskError(f"task {name!r} names a column twice: {columns}")
        return Task(
            f"regress:{','.join(columns)}",
            tuple(Target(c, "regression", (c,), "ccc") for c in columns),
            "ccc",
            f"regression on {', '.join(columns)}, mean CCC",
        )
    if len(columns) != 1:
        raise TaskError(
            f"task {name!r}: classify: takes exactly one column, got {columns}; "
            "list several tasks instead (classify:a,classify:b)"
        )
    col = columns[0]
    return Task(
        f"classify:{col}",
        (Target(col, "classification", (col,), "uar"),),
        "uar",
        f"classification of {col}, UAR",
    )


def get_task(name: str) -> Task:
    """A task by name: a key of :data:`TASKS`, ``regress:COL[,COL...]`` or ``classify:COL``.

    Args:
        name: the task name.

    Returns:
        The task; ``classify:`` tasks come without classes (see :func:`resolve_task`).

    Raises:
        TaskError: the name is unknown (lists the known ones).

    Example:
        >>> get_task("regress:pitch,loudness").columns
        ('pitch', 'loudness')
    """
    name = name.strip()
    if name in TASKS:
        return TASKS[name]
    for prefix in PARAMETRIC:
        if name.startswith(prefix):
            return _parametric(name, _split_columns(name[len(prefix):]))
    raise TaskError(
        f"unknown task {name!r}; choose one of {sorted(TASKS)} or regress:COL[,COL...] / classify:COL"
    )


def parse_tasks(spec: str | Iterable[str]) -> list[Task]:
    """Parse a comma-separated list of tasks.

    Commas separate tasks, but a bare column name right after a ``regress:`` entry extends it,
    so ``regress:a,b,avb-type`` is two tasks (``regress:a,b`` and ``avb-type``). ``+`` joins
    columns unambiguously (``regress:a+b``).

    Args:
        spec: e.g. ``"avb-high,avb-type"``, or an iterable of such strings.

    Returns:
        The tasks in the given order, without duplicates.

    Raises:
        TaskError: the spec is empty or names an unknown task.
    """
    parts = [spec] if isinstance(spec, str) else list(spec)
    tokens = [tok.strip() for part in parts for tok in str(part).split(",") if tok.strip()]
    if not tokens:
        raise TaskError(f"no task given in {spec!r}; choose from {sorted(TASKS)}")
    groups: list[list[str]] = []
    for tok in tokens:
        is_new = tok in TASKS or tok.startswith(PARAMETRIC)
        if not is_new and groups and groups[-1][0].startswith("regress:"):
            groups[-1].append(tok)
        elif not is_new:
            get_task(tok)  # raises with the list of known tasks
        else:
            groups.append([tok])
    tasks: list[Task] = []
    for group in groups:
        task = get_task(",".join(group))
        if task.name not in [t.name for t in tasks]:
            tasks.append(task)
    return tasks


def class_name(value: object) -> str | None:
    """Text form of a class label; None for missing values.

    The rule: a value that reads as a finite number is a number, and two class values are the
    same class when they are the same number, whatever their spelling (``0.4115`` and
    ``'0.41150'`` are one class, ``1.0``, ``'1'`` and ``'01'`` are class ``'1'``). Other values
    are text, compared after stripping spaces.

    Example:
        >>> class_name("0.41150"), class_name(2.0), class_name(" happy ")
        ('0.4115', '2', 'happy')
    """
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        # a float32/float16 value as it reads (0.1, not 0.10000000149011612)
        number = float(str(value)) if isinstance(value, np.floating) else float(value)
        if np.isnan(number):
            return None
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return text
    if not np.isfinite(number):
        return str(value).strip() or None
    return str(int(number)) if number.is_integer() else repr(number)


def _sorted_classes(values: Iterable[str]) -> tuple[str, ...]:
    values = sorted(set(values))
    try:
        return tuple(sorted(values, key=float))
    except ValueError:
        return tuple(values)


MAX_NUMERIC_CLASSES = 100
"""A ``classify:`` column of numbers with more distinct values than this is refused (a
continuous rating, not classes); text columns have no such limit."""


def _check_class_count(task: str, column: str, classes: Sequence[str], values: pd.Series) -> None:
    """Refuse ``classify:`` on a numeric column with more than :data:`MAX_NUMERIC_CLASSES` values.

    Raises:
        TaskError: names the column, the number of distinct values and suggests ``regress:``.
    """
    numeric = pd.api.types.is_numeric_dtype(values) or all(_is_number(c) for c in classes)
    if numeric and len(classes) > MAX_NUMERIC_CLASSES:
        raise TaskError(
            f"task {task!r}: column {column!r} holds {len(classes)} distinct numbers "
            f"(more than {MAX_NUMERIC_CLASSES}), which looks like a continuous value, not classes; "
            f"use --task regress:{column}, or bin the column into classes first"
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def resolve_task(task: Task | str, labels: pd.DataFrame) -> Task:
    """Check a task against a label table and fill in classes discovered from the data.

    Args:
        task: a task or task name.
        labels: a corpus label table (``Corpus.labels``).

    Returns:
        The task with every classification target's classes set. Classes already set (fixed
        tasks) are kept; label values outside them are logged as warnings.

    Raises:
        TaskError: a column is missing (names the missing columns and the available ones), a
            regression column is not numeric, or a class column has no values.
    """
    task = get_task(task) if isinstance(task, str) else task
    missing = [c for c in task.columns if c not in labels.columns]
    if missing:
        raise TaskError(
            f"task {task.name!r} needs label column(s) {missing}, which the corpus lacks; "
            f"available columns: {list(labels.columns)}"
        )
    found: dict[str, tuple[str, ...]] = {}
    for t in task.targets:
        if t.kind == "regression":
            bad = [c for c in t.columns if not pd.api.types.is_numeric_dtype(labels[c])]
            if bad:
                raise TaskError(
                    f"task {task.name!r}: column(s) {bad} hold text, not numbers; "
                    f"use classify:{bad[0]} for a class column"
                )
            continue
        names = [n for n in map(class_name, labels[t.columns[0]]) if n is not None]
        if t.classes is None:
            if not names:
                raise TaskError(f"task {task.name!r}: column {t.columns[0]!r} has no values to learn classes from")
            found[t.name] = _sorted_classes(names)
            _check_class_count(task.name, t.columns[0], found[t.name], labels[t.columns[0]])
        else:
            extra = sorted(set(names) - set(t.classes))
            if extra:
                logger.warning(
                    "task %s: column %s holds values outside its classes: %s",
                    task.name,
                    t.columns[0],
                    extra[:5],
                )
    return task.with_classes(found) if found else task


def target_array(target: Target, labels: pd.DataFrame, ids: Sequence[str]) -> np.ndarray:
    """Label values of one target for ``ids``, ready for a head.

    Args:
        target: a resolved target.
        labels: the label table.
        ids: clip ids; ids without a label row get missing values.

    Returns:
        Regression: float32 ``(len(ids), len(columns))`` with NaN for missing values.
        Classification: int64 ``(len(ids),)`` class indices, -1 for missing or unknown values.

    Raises:
        TaskError: a classification target has no classes yet.
    """
    rows = labels.reindex(list(ids))
    if target.kind == "regression":
        return rows[list(target.columns)].to_numpy(dtype=np.float32, na_value=np.nan)  # (n, k)
    if target.classes is None:
        raise TaskError(f"target {target.name!r} has no classes; call resolve_task first")
    index = {c: i for i, c in enumerate(target.classes)}
    values = [class_name(v) for v in rows[target.columns[0]]]
    return np.array([index.get(v, -1) for v in values], dtype=np.int64)  # (n,)


def check_varied_targets(task: Task, labels: pd.DataFrame, ids: Sequence[str], *, split: str = "Val") -> None:
    """Refuse a CCC-scored target whose labels on ``ids`` are all the same number.

    The CCC (and Pearson's r) of a constant target is undefined or 0 whatever the prediction,
    so such a split cannot select a model or score one; we stop before training (exit 2)
    rather than report ``ccc = nan``.

    Args:
        task: a resolved task.
        labels: the label table.
        ids: the clips of the split.
        split: the split's name, for the message.

    Raises:
        TaskError: names the task, the column, the split, the count and the value.
    """
    if not ids:
        return
    rows = labels.reindex(list(ids))
    for t in task.targets:
        if t.metric != "ccc":  # MAE of a constant target is defined; UAR needs no variance
            continue
        for col in t.columns:
            values = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if len(values) and np.all(values == values[0]):
                raise TaskError(
                    f"task {task.name!r}: column {col!r} is constant on {split} "
                    f"(all {len(values)} labelled {split} clips are {values[0]:g}), so CCC on "
                    f"{split} is undefined and cannot select or score a model; give {split} clips "
                    "varied labels (check the split column) or leave this column out of the task"
                )
