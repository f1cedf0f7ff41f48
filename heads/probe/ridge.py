"""The probe's ridge protocol: every alpha of a (layer, seed) through THE ridge solver.

Per seed and target one :class:`heads.classical.RidgeSolver` (its eigendecomposition path)
gives the solutions for every alpha at once; Val predictions of all alphas are one matrix
product. A refit at a known alpha is one Cholesky solve of the same solver. Bootstrap seeds
are Train count weights ``W`` (:func:`train_counts`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from heads.classical.ridge import RidgeSolver
from heads.probe.data import ProbeData, labelled
from heads.scoring import uar_score

def _ccc_alphas(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Population CCC per (alpha, column): t (m, k), p (m, A, k) -> (A, k); as scoring.ccc_score."""
    mt, mp = t.mean(axis=0), p.mean(axis=0)  # (k,), (A, k)
    a, b = t - mt, p - mp
    m = t.shape[0]
    vt, vp = (a * a).sum(axis=0) / m, (b * b).sum(axis=0) / m
    cov = np.einsum("mk,mak->ak", a, b) / m
    den = vt + vp + (mt - mp) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 2 * cov / np.where(den > 0, den, 1.0), np.nan)


def best_index(scores: np.ndarray, greater: bool) -> int:
    """First best entry; NaN never wins (entry 0 when all are NaN), as GridBest."""
    s = np.where(np.isnan(scores), -np.inf if greater else np.inf, scores)
    return int(np.argmax(s) if greater else np.argmin(s))


def _balanced(codes: np.ndarray, counts: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights n / (C x count_c) of the (resampled) training rows."""
    per_class = np.bincount(codes, weights=counts, minlength=n_classes)
    present = per_class > 0
    cw = np.zeros(n_classes)
    cw[present] = counts.sum() / (present.sum() * per_class[present])
    return cw[codes]


def fit_ridge_task(X: np.ndarray, data: ProbeData, counts: np.ndarray,  # noqa: N803
                   alphas: Sequence[float], *, fixed: dict[str, float] | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Fit every target of the task with ridge, alpha chosen on Val, predict every row.

    The same protocol as ``train --head ridge`` (``heads.classical.fit_select``): Ridge for
    regression, RidgeClassifier with balanced class weights for classification (+-1 targets,
    argmax), alpha chosen by the target's metric on Val (ties: the first alpha).

    Args:
        X: standardised features of every row, (n, d).
        data: rows, splits and labels.
        counts: (n,) how often each row enters the fit (0 outside Train; bootstrap counts).
        alphas: the ridge grid.
        fixed: alpha per target to refit at, instead of choosing on Val.

    Returns:
        (predictions per target for every row: regression (n, k) clipped to the target's
        range, classification (n,) codes; alpha per target).

    Raises:
        ValueError: a target has fewer than 2 Train or no Val clips with labels.
    """
    task = data.task
    va = data.rows("Val")
    tr = np.flatnonzero(counts > 0)
    preds: dict[str, np.ndarray] = {}
    chosen: dict[str, float] = {}
    cache: list[tuple[np.ndarray, np.ndarray, RidgeSolver]] = []
    for tg in task.targets:
        y = data.truths[tg.name]
        ok_tr, ok_va = tr[labelled(tg.kind, y[tr])], va[labelled(tg.kind, y[va])]
        if len(ok_tr) < 2 or len(ok_va) < 1:
            raise ValueError(f"task {task.name}, target {tg.name}: {len(ok_tr)} Train and "
                             f"{len(ok_va)} Val clips with labels; need Train and Val labels")
        w = counts[ok_tr].astype(np.float64)
        classes = None
        if tg.kind == "classification":
            classes = np.unique(y[ok_tr])
            codes = np.searchsorted(classes, y[ok_tr])
            w = w * _balanced(codes, w, len(classes))
            if len(classes) == 2:
                Y = np.where(codes == 1, 1.0, -1.0)[:, None]
            else:
                Y = -np.ones((len(ok_tr), len(classes)))
                Y[np.arange(len(ok_tr)), codes] = 1.0
        else:
            Y = y[ok_tr].astype(np.float64)
        if fixed is not None:
            coef, intercept = RidgeSolver(X[ok_tr], w).solve(Y, fixed[tg.name])
            chosen[tg.name] = float(fixed[tg.name])
        else:
            eig = next((e for r, ww, e in cache
                        if np.array_equal(r, ok_tr) and np.array_equal(ww, w)), None)
            if eig is None:
                eig = RidgeSolver(X[ok_tr], None if (w == 1).all() else w)
                cache.append((ok_tr, w, eig))
            coefs, intercepts = eig.path(Y, alphas)  # (A, d, k), (A, k)
            best = _select_alpha(tg, X[ok_va], y[ok_va], coefs, intercepts, classes)
            coef, intercept = coefs[best], intercepts[best]
            chosen[tg.name] = float(alphas[best])
        full = (X @ coef.astype(X.dtype)) + intercept  # (n, k)
        if classes is not None:
            idx = (full[:, 0] > 0).astype(np.int64) if full.shape[1] == 1 else full.argmax(axis=1)
            preds[tg.name] = classes[idx]
        else:
            if tg.value_range is not None:
                full = np.clip(full, *tg.value_range)  # labels live in a known range
            preds[tg.name] = full
    return preds, chosen


def _select_alpha(tg: Any, X_va: np.ndarray, y_va: np.ndarray, coefs: np.ndarray,  # noqa: N803
                  intercepts: np.ndarray, classes: np.ndarray | None) -> int:
    """Index of the alpha whose Val score is best (the target's metric, as fit_select)."""
    n_alpha, d, k = coefs.shape
    dec = (X_va @ coefs.transpose(1, 0, 2).reshape(d, n_alpha * k)).reshape(-1, n_alpha, k)
    dec += intercepts[None]
    if classes is not None:
        idx = (dec[:, :, 0] > 0).astype(np.int64) if k == 1 else dec.argmax(axis=2)
        scores = np.array([uar_score(y_va, classes[idx[:, a]]) for a in range(n_alpha)])
        return best_index(scores, True)
    if tg.value_range is not None:  # score what is reported: the clipped prediction
        dec = np.clip(dec, *tg.value_range)
    if tg.metric == "mae":
        return best_index(np.abs(dec - y_va[:, None, :]).mean(axis=(0, 2)), False)
    return best_index(_ccc_alphas(y_va.astype(np.float64), dec).mean(axis=1), True)


def train_counts(n: int, train_rows: np.ndarray, seed: int) -> np.ndarray:
    """(n,) fit counts: all Train rows once for seed 0, a bootstrap resample of Train else."""
    counts = np.zeros(n)
    if seed == 0:
        counts[train_rows] = 1.0
    else:
        draw = np.random.default_rng(seed).integers(0, len(train_rows), len(train_rows))
        counts[train_rows] = np.bincount(draw, minlength=len(train_rows))
    return counts
