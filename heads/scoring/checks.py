"""Input checks shared by every point metric: one rule for real arrays, one for class labels.

A metric never skips a bad row silently: NaN / infinite values, shapes that differ and empty
inputs are errors whose message says what to drop or fix.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def real_array(values: Any, name: str) -> np.ndarray:
    """``values`` as a float64 array; raises when it is not numeric or holds NaN / Inf."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, got {type(values).__name__}: {err}") from err
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        raise ValueError(
            f"{name} contains {n_nan} NaN and {int(bad.sum()) - n_nan} infinite value(s); "
            "drop those rows before scoring (the metrics never skip them silently)"
        )
    return arr


def regression_pair(
    y_true: Any, y_pred: Any, *, allow_2d: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (truth, prediction) pair of real arrays of equal shape."""
    t = real_array(y_true, "y_true")
    p = real_array(y_pred, "y_pred")
    allowed = (1, 2) if allow_2d else (1,)
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.ndim not in allowed:
            hint = "" if allow_2d else "; use mean_ccc for 2-D (rows x columns) targets"
            raise ValueError(
                f"{name} must have {' or '.join(f'{d}-D' for d in allowed)} shape, "
                f"got shape {arr.shape}{hint}"
            )
    if t.shape != p.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got {t.shape} and {p.shape}"
        )
    if t.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty: a metric needs at least one row")
    return t, p


def label_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (truth, prediction) pair of 1-D label arrays of equal length."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D class labels, got shape {arr.shape}")
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError(
                f"{name} contains {int(np.isnan(arr).sum())} NaN label(s); "
                "drop unlabelled rows before scoring"
            )
    if t.shape != p.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}"
        )
    if t.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty: a metric needs at least one row")
    return t, p


def class_set(t: np.ndarray, p: np.ndarray, labels: Any | None) -> np.ndarray:
    """The classes a label metric averages over: ``labels``, or every class in truth or prediction.

    The default is scikit-learn's (``unique_labels(y_true, y_pred)``) and audmetric's, the
    rule of FIELD_NOTES section 2 (see :mod:`heads.scoring`).
    """
    if labels is None:
        return np.unique(np.concatenate([t, p]))
    classes = np.asarray(labels)
    if classes.ndim != 1 or classes.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got {labels!r}")
    return classes
