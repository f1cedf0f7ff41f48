"""The aligned arrays of one run and the two rules every head shares.

* :class:`Dataset`: clip ids, the split of each, the feature matrix and every task's labels;
  :class:`SequenceDataset` carries frame sequences instead of a matrix.
* :func:`labelled`: THE label-validity rule (which rows have a label).
* :func:`fit_moments` / :func:`standardise`: THE Train standardisation (population std, a
  dimension whose std is below :data:`STD_FLOOR` is only centred).

Built from the store by :func:`build_dataset` (vectors) and
:func:`heads.sequences.build_sequence_dataset` (frames of a sequence head).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from data.corpus import Corpus
from data.tasks import Task, target_array
from extract.store import FeatureStore
from heads.config import SPLITS
from heads.features import FeatureRequest, load_matrix

if TYPE_CHECKING:  # the protocol of heads.sequences, which builds sequence datasets on this module
    from heads.sequences import SequenceSet

log = logging.getLogger(__name__)

STD_FLOOR = 1e-8
"""A Train standard deviation below this counts as constant: the dimension is only centred."""


@dataclass
class Dataset:
    """Aligned arrays of one experiment: ids, split of each id, features, per-task truths."""

    ids: list[str]
    split: np.ndarray                 # (n,) 'Train' | 'Val' | 'Test'
    X: np.ndarray                     # (n, D) float32
    tasks: list[Task]
    truths: dict[str, dict[str, np.ndarray]]   # task -> target -> labels
    feature_desc: list[dict[str, Any]]
    excluded_missing_features: int = 0

    def rows(self, split: str) -> np.ndarray:
        """Row indices of one split, in order."""
        return np.flatnonzero(self.split == split)


@dataclass
class SequenceDataset(Dataset):
    """A :class:`Dataset` of a sequence head: ``sequences`` aligned to ids (``X`` is empty)."""

    sequences: "SequenceSet | None" = None


def labelled(kind: str, y: np.ndarray, *, every_column: bool = True) -> np.ndarray:
    """(n,) bool: rows with a label.

    A class code is a label when it is >= 0 (-1 marks a missing one). A regression row is a
    label when every column is finite (``every_column``: what an estimator without masking
    needs) or when any column is (a loss that masks missing columns learns from it).

    Example:
        >>> y = np.array([[0.1, np.nan], [0.2, 0.3]])
        >>> labelled("regression", y).tolist(), labelled("regression", y, every_column=False).tolist()
        ([False, True], [True, True])
    """
    if kind == "classification":
        return y >= 0
    finite = np.isfinite(y)
    return finite.all(axis=1) if every_column else finite.any(axis=1)


def floor_std(std: np.ndarray) -> np.ndarray:
    """A copy of ``std`` with every value below :data:`STD_FLOOR` set to 1 (centre only)."""
    std = np.array(std, dtype=np.float64)
    std[std < STD_FLOOR] = 1.0
    return std


def fit_moments(X: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """Per-dimension Train mean and floored population std, float64 ``(D,)`` each.

    No rows: mean 0 and std 1 (the identity).
    """
    if len(rows) == 0:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    Xt = X[rows]  # noqa: N806
    return Xt.mean(axis=0, dtype=np.float64), floor_std(Xt.std(axis=0, dtype=np.float64))


def standardise(X: np.ndarray, train_rows: np.ndarray, *,  # noqa: N803
                moments: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Standardise float32 features with the moments of the finite Train rows.

    Args:
        X: (n, D) features.
        train_rows: the Train rows.
        moments: ``(mean, std)`` from :func:`fit_moments` when already computed.

    Returns:
        (standardised X float32 with the rows holding a non-finite value set to 0,
        bad rows mask (n,)).

    Example:
        >>> Z, bad = standardise(np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 1.0]]), np.array([0, 1]))
        >>> Z.tolist(), bad.tolist()
        ([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]], [False, False, True])
    """
    out = np.array(X, dtype=np.float32)  # a copy, standardised in place
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        out[~np.isfinite(out)] = 0.0
    mean, std = moments if moments is not None else fit_moments(out, train_rows[~bad[train_rows]])
    out -= mean.astype(np.float32)
    out /= std.astype(np.float32)
    out[bad] = 0.0
    return out, bad


def split_clips(corpus: Corpus) -> Any:
    return corpus.clips[corpus.clips["split"].isin(list(SPLITS))]


def build_dataset(store: FeatureStore, corpus: Corpus, tasks: Sequence[Task],
                  requests: Sequence[FeatureRequest]) -> Dataset:
    """Load features for every clip with a split and the labels of every task's targets.

    Clips without stored features, or with NaN / Inf in them, are left out (and counted).
    """
    clips = split_clips(corpus)
    ids = list(clips.index)
    X, present, desc = load_matrix(store, requests, ids)
    missing = int((~present).sum())
    if missing:
        log.warning("%d clip(s) have no stored features (failed or not extracted) and are left out",
                    missing)
    keep = np.flatnonzero(present)
    ids = [ids[i] for i in keep]
    X = X[keep]
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        log.warning("%d clip(s) have NaN/Inf features and are left out", int(bad.sum()))
        ids = [c for c, b in zip(ids, bad) if not b]
        X = X[~bad]
        missing += int(bad.sum())
    split = clips.loc[ids, "split"].to_numpy()
    truths = {t.name: {tg.name: target_array(tg, corpus.labels, ids) for tg in t.targets} for t in tasks}
    return Dataset(ids, split, X, list(tasks), truths, desc, missing)
