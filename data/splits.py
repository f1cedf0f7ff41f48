"""An automatic Train/Val/Test split for a corpus that has none: group-disjoint, stratified.

``extract --split auto`` calls :func:`auto_split` and writes the result to ``WORKDIR/split.csv``
(:func:`write_split`); every later command reads the workdir's corpus with that split applied
(:func:`apply_split`, through :func:`data.workdir.open_corpus`), so every run, probe and report
of a workdir is scored on the same Val and Test clips.

The rule, in full:

* Groups: a clip's group is the clip table's ``group`` (speaker/subject: the csv layout's
  ``speaker`` column or ``--group-column``), else its speaker as :func:`data.folds.speakers`
  reads it. A clip without a group is a group of its own. No group has clips in two splits.
* Strata: the values of one label column (:func:`strata`): its classes, or for a column of more
  than :data:`MAX_CLASSES` distinct numbers its quartile bins (``q1`` .. ``q4``); a clip without
  that label is the stratum ``(none)``. The default column is the first label column that is not
  the transcript.
* Assignment: groups are shuffled with ``numpy.random.default_rng(seed)``, then taken from the
  largest to the smallest (a stable sort, so ties keep the shuffled order). Each goes to the
  split where adding it brings the clip counts per stratum, and the split's size, closest to
  ``fraction x total`` in the squared error weighted by ``1 / total`` of each stratum (so a rare
  class counts as much as a common one). While fewer groups are left than splits are empty, the
  next group goes to the empty split with the largest fraction, so every split gets a group.

Example:
    >>> import pandas as pd
    >>> from data.corpus import Corpus
    >>> idx = pd.Index([f"c{i}" for i in range(12)], name="clip_id")
    >>> clips = pd.DataFrame({"path": "", "split": "", "group": [f"s{i // 2}" for i in range(12)]},
    ...                      index=idx)
    >>> labels = pd.DataFrame({"mood": ["a", "b"] * 6}, index=idx)
    >>> s = auto_split(Corpus(root=".", layout="csv", clips=clips, labels=labels),
    ...                fractions=(4 / 6, 1 / 6, 1 / 6))
    >>> s.counts()
    {'Train': 8, 'Val': 2, 'Test': 2}
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from data.corpus import INDEX_NAME, SPLITS, Corpus, CorpusError, examples, natural_key
from data.folds import column_values, speakers

logger = logging.getLogger(__name__)

SPLIT_FILE = "split.csv"
"""The automatic split of a workdir: ``WORKDIR/split.csv`` (clip_id, split, group, stratum)."""

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
"""Train, Val, Test shares of the clips (``--split-fractions``)."""

MAX_CLASSES = 20
"""A numeric stratification column with more distinct values than this is binned in quartiles."""

NO_STRATUM = "(none)"
NO_STRATIFY = "none"
"""``--split-stratify none``: balance only the sizes of the splits."""

METHODS = ("auto", "corpus")
"""``--split auto``: :func:`auto_split`; ``--split corpus``: the corpus's own split column."""


class SplitError(CorpusError):
    """A split cannot be made or is unusable; the message names the fix (a working command)."""


@dataclass(frozen=True, eq=False)
class AutoSplit:
    """An automatic split and how it was made.

    Attributes:
        split: ``{clip id: 'Train' | 'Val' | 'Test'}`` (read-only), every clip of the corpus.
        group: ``{clip id: group}`` as used (a clip without one: its own id).
        stratum: ``{clip id: stratum}`` (``(none)`` without a label; all ``(none)`` unstratified).
        seed, fractions: the settings.
        stratify: the label column the strata come from, or ``none``.
        binned: True when the strata are quartile bins of a numeric column.
        group_source: where the groups came from (``speaker``, ``group``, or ``none``).
    """

    split: Mapping[str, str]
    group: Mapping[str, str]
    stratum: Mapping[str, str]
    seed: int
    fractions: tuple[float, float, float]
    stratify: str
    binned: bool = False
    group_source: str = "none"

    def __post_init__(self) -> None:
        for name in ("split", "group", "stratum"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def counts(self) -> dict[str, int]:
        """Clips per split."""
        values = list(self.split.values())
        return {s: values.count(s) for s in SPLITS}

    def table(self) -> pd.DataFrame:
        """One row per split: ``clips``, ``groups``, then the clip count of every stratum."""
        frame = self.frame()
        names = sorted(set(frame["stratum"]), key=lambda v: (v == NO_STRATUM, natural_key(v)))
        rows = []
        for s in SPLITS:
            part = frame[frame["split"] == s]
            row = {"clips": len(part), "groups": part["group"].nunique()}
            if self.stratify != NO_STRATIFY:
                counts = part["stratum"].value_counts()
                row |= {n: int(counts.get(n, 0)) for n in names}
            rows.append(row)
        return pd.DataFrame(rows, index=pd.Index(SPLITS, name="split"))

    def frame(self) -> pd.DataFrame:
        """The split as written to ``split.csv``: index clip id, columns split, group, stratum."""
        ids = list(self.split)
        return pd.DataFrame({"split": [self.split[c] for c in ids],
                             "group": [self.group[c] for c in ids],
                             "stratum": [self.stratum[c] for c in ids]},
                            index=pd.Index(ids, name=INDEX_NAME))

    def describe(self) -> str:
        """One line: seed, fractions, groups and strata."""
        f = " / ".join(f"{s} {x:.2f}" for s, x in zip(SPLITS, self.fractions))
        groups = {"none": "none (no speaker/group column: each clip on its own, so a speaker may "
                          "be in two splits)",
                  "speaker": "the speaker column",
                  "group": "the group (speaker) of each clip"}[self.group_source]
        strat = ("none" if self.stratify == NO_STRATIFY else
                 f"{self.stratify!r}" + (" (quartile bins)" if self.binned else ""))
        return f"seed {self.seed}, fractions {f}; groups: {groups}; stratified by {strat}"


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative shares that sum to 1 with Train and Val above 0.

    Raises:
        SplitError: names what is wrong.

    Example:
        >>> check_fractions([0.8, 0.1, 0.1])
        (0.8, 0.1, 0.1)
    """
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(not np.isfinite(f) or f < 0 for f in values):
        raise SplitError(f"split fractions must be three shares Train,Val,Test (e.g. 0.7,0.15,0.15),"
                         f" got {list(fractions)}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise SplitError(f"split fractions must sum to 1, got {list(values)} (sum {sum(values):g})")
    if values[0] <= 0 or values[1] <= 0:
        raise SplitError(f"split fractions need Train and Val above 0 (Test may be 0), got "
                         f"{list(values)}")
    return values  # type: ignore[return-value]


def default_stratify(corpus: Corpus) -> str:
    """The first label column that is not the transcript, or ``none`` when there is none."""
    from data.corpora.registry import TEXT_COLUMN

    for col in corpus.labels.columns:
        if col != TEXT_COLUMN and col != "speaker":
            return str(col)
    return NO_STRATIFY


def strata(corpus: Corpus, column: str) -> tuple[pd.Series, bool]:
    """Stratum of every clip: the class of ``column``, or its quartile bin for a column of more
    than :data:`MAX_CLASSES` distinct numbers; ``(none)`` where the clip has no label.

    Returns:
        ``(strata indexed like corpus.clips, binned)``.

    Raises:
        SplitError: ``column`` is not a label column (lists them).
    """
    if column == NO_STRATIFY:
        return pd.Series(NO_STRATUM, index=corpus.clips.index, dtype=object), False
    if column not in corpus.labels.columns:
        raise SplitError(f"--split-stratify {column!r} is not a label column of the "
                         f"{corpus.layout} corpus at {corpus.root}; label columns: "
                         f"{list(corpus.labels.columns)} (or 'none')")
    raw = corpus.labels[column].reindex(corpus.clips.index)
    numeric = pd.api.types.is_numeric_dtype(raw)
    if numeric and raw.dropna().nunique() > MAX_CLASSES:
        values = raw.to_numpy(dtype=float)
        edges = np.nanquantile(values, [0.25, 0.5, 0.75])
        bins = np.searchsorted(edges, values, side="right") + 1  # 1..4
        out = pd.Series([f"q{b}" if np.isfinite(v) else NO_STRATUM for b, v in zip(bins, values)],
                        index=corpus.clips.index, dtype=object)
        return out, True
    text = column_values(corpus, column)
    return text.where(text != "", NO_STRATUM).astype(object), False


def auto_split(corpus: Corpus, *, seed: int = 0,
               fractions: Sequence[float] = DEFAULT_FRACTIONS,
               stratify: str | None = None) -> AutoSplit:
    """A group-disjoint, stratified Train/Val/Test split of every clip (module docstring).

    Args:
        corpus: the corpus (its own split column is ignored).
        seed: the shuffle seed.
        fractions: Train, Val, Test shares of the clips.
        stratify: a label column, ``none``, or None for :func:`default_stratify`.

    Returns:
        The split.

    Raises:
        SplitError: bad fractions or column, or fewer groups than splits to fill.
    """
    fractions = check_fractions(fractions)
    column = default_stratify(corpus) if stratify is None else stratify
    stratum, binned = strata(corpus, column)
    ids = [str(c) for c in corpus.clips.index]
    who, source = column_values(corpus, "group"), "group"
    if not (who != "").any():  # no group column: the speaker label column, if the layout has one
        who, source = speakers(corpus), "speaker"
    if who is None:
        group = {c: c for c in ids}
        source = "none"
    else:
        group = {c: (g if g else c) for c, g in zip(ids, who.astype(str))}

    names = sorted(set(group.values()), key=natural_key)
    levels = sorted(set(stratum), key=natural_key)
    g_index = {g: i for i, g in enumerate(names)}
    s_index = {s: j for j, s in enumerate(levels)}
    counts = np.zeros((len(names), len(levels) + 1))  # per group: clips per stratum, then size
    for c in ids:
        gi = g_index[group[c]]
        counts[gi, s_index[stratum[c]]] += 1
        counts[gi, -1] += 1
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if len(names) < len(wanted):
        raise SplitError(
            f"the corpus at {corpus.root} has {len(names)} group(s) ({examples(names)}), too few "
            f"for a group-disjoint split into {len(wanted)} parts; add clips of more speakers, or "
            "give the csv a split column (train/val/test) yourself")

    total = counts.sum(axis=0)
    target = np.outer(fractions, total)  # (3, strata + 1)
    weight = 1.0 / np.maximum(total, 1.0)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    order = order[np.argsort(-counts[order, -1], kind="stable")]
    filled = np.zeros_like(target)
    n_groups = np.zeros(3, dtype=int)
    role_of: dict[int, int] = {}
    for k, gi in enumerate(order):
        v = counts[gi]
        empty = [s for s in wanted if n_groups[s] == 0]
        if empty and len(order) - k <= len(empty):
            s = max(empty, key=lambda i: (fractions[i], -i))
        else:
            # the increase of sum_c weight_c (filled_c - target_c)^2 when the group joins split s
            cost = [float(np.sum(weight * v * (2 * (filled[s] - target[s]) + v))) if s in wanted
                    else np.inf for s in range(3)]
            s = int(np.argmin(cost))
        role_of[gi] = s
        filled[s] += v
        n_groups[s] += 1
    split = {c: SPLITS[role_of[g_index[group[c]]]] for c in ids}
    out = AutoSplit(split=split, group=group, stratum=dict(zip(ids, stratum.astype(str))),
                    seed=int(seed), fractions=fractions, stratify=column, binned=binned,
                    group_source=source)
    logger.info("automatic split (%s): %s", out.describe(), out.counts())
    return out


def write_split(workdir: str | os.PathLike, split: AutoSplit) -> Path:
    """Write ``WORKDIR/split.csv`` (temporary name, then an atomic rename; unchanged content is
    not rewritten). Returns the path."""
    path = Path(workdir) / SPLIT_FILE
    text = split.frame().to_csv()
    if path.is_file() and path.read_text() == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def read_split(workdir: str | os.PathLike, *, fix: str) -> dict[str, str]:
    """``{clip id: split}`` of ``WORKDIR/split.csv``.

    Args:
        workdir: the workdir.
        fix: the command that writes the file again, for messages.

    Raises:
        SplitError: the file is missing or damaged (names it and the fix).
    """
    path = Path(workdir) / SPLIT_FILE
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise SplitError(f"{path} is missing, but {workdir}/corpus.json records an automatic "
                         f"split; write it again with:\n  {fix}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SplitError(f"{path} is damaged ({exc}); write it again with:\n  {fix}") from None
    if INDEX_NAME not in table.columns or "split" not in table.columns or not set(
            table["split"]) <= set(SPLITS):
        raise SplitError(f"{path} is not a split file (needs columns {INDEX_NAME}, split with "
                         f"values {list(SPLITS)}); write it again with:\n  {fix}")
    return dict(zip(table[INDEX_NAME], table["split"]))


def apply_split(corpus: Corpus, split: Mapping[str, str], *, source: str = SPLIT_FILE) -> Corpus:
    """The corpus with each clip's split set from ``split``; clips it does not list get ``''``
    (they take part in no run; the count is logged)."""
    ids = corpus.clips.index.astype(str)
    values = [split.get(c, "") for c in ids]
    unknown = sum(1 for v in values if not v)
    if unknown:
        logger.warning("%d clip(s) of the corpus are not in %s (added after the split was made) "
                       "and take part in no run; rerun extract with --split auto to split them",
                       unknown, source)
    return replace(corpus, clips=corpus.clips.assign(split=values))


def check_split(corpus: Corpus, *, fix: str) -> None:
    """Refuse a corpus without Train or Val clips, saying what to do.

    Args:
        corpus: the corpus as a command reads it (its split applied).
        fix: the command that makes an automatic split of this workdir.

    Raises:
        SplitError: no clip has a split (names the column to add and the command), or Train or
            Val is empty (names the counts).
    """
    counts = corpus.summary()
    if counts["Train"] and counts["Val"]:
        return
    if not any(counts[s] for s in SPLITS):
        where = ("add a column `split` (train/val/test) to the label csv, or"
                 if corpus.layout == "csv" else "give the corpus a split, or")
        raise SplitError(
            f"no clip of the {corpus.layout} corpus at {corpus.root} has a split (Train/Val/Test), "
            f"so there is nothing to train on and nothing to select on; {where} make a "
            f"speaker-disjoint, label-stratified split (written to split.csv, features already "
            f"stored are kept):\n  {fix}")
    raise SplitError(
        f"the {corpus.layout} corpus at {corpus.root} has {counts['Train']} Train and "
        f"{counts['Val']} Val clip(s): training needs both (Val selects the model); give Train "
        "and Val rows in the split column, or replace the split by an automatic one (features "
        f"already stored are kept):\n  {fix}")


__all__ = ["AutoSplit", "DEFAULT_FRACTIONS", "MAX_CLASSES", "METHODS", "NO_STRATIFY", "SPLIT_FILE",
           "SplitError", "apply_split", "auto_split", "check_fractions", "check_split",
           "default_stratify", "read_split", "strata", "write_split"]
