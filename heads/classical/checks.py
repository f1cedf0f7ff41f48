"""Input checks of the classical heads: features and targets as ``fit_select`` takes them.

Rows with NaN / infinite features or labels are refused with the rows named and what to do;
nothing is dropped silently.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def check_features(X: Any, name: str) -> np.ndarray:  # noqa: N803
    """2-D float features with no NaN / Inf rows (float16 and ints become float32 / 64)."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows, features) array, got shape {arr.shape}")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind != "f":
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} has {rows.size} row(s) with NaN or infinite features (first rows: "
            f"{rows[:5].tolist()}); check the feature set (a broken extraction or a float16 "
            "overflow) and drop or re-extract those clips"
        )
    return arr


def check_targets(y: Any, kind: str, name: str, n_rows: int) -> np.ndarray:
    """Regression: float64 (n,) / (n, k); classification: int64 (n,) codes. No NaN rows."""
    arr = np.asarray(y)
    if arr.shape[:1] != (n_rows,):
        raise ValueError(
            f"{name} must have {n_rows} rows (as its features), got shape {arr.shape}"
        )
    if kind == "classification" and arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class codes, got shape {arr.shape}")
    if kind == "regression" and arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D (rows, columns), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be numeric "
            f"({'integer class codes' if kind == 'classification' else 'floats'}), "
            f"got dtype {arr.dtype}"
        )
    arr = arr.astype(np.float64) if kind == "regression" or arr.dtype.kind == "f" else arr
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr).reshape(n_rows, -1).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{name} has {rows.size} row(s) with NaN or infinite labels (first rows: "
                f"{rows[:5].tolist()}); exclude unlabelled rows (e.g. Test, missing "
                "annotations) before fit_select"
            )
    if kind == "classification":
        if arr.dtype.kind == "f":
            if not np.all(arr == np.round(arr)):
                raise ValueError(f"{name} must be integer class codes, got non-integer values")
        arr = arr.astype(np.int64)
    return arr
