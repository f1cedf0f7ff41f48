"""Ridge for every alpha from one eigendecomposition (the probe's fast path).

Per seed and target one eigendecomposition of the centred, weighted Gram matrix
``X'WX = V diag(s) V'`` gives the solutions for every alpha at once,
``b(alpha) = V diag(1/(s + alpha)) V' X'W y``; Val predictions of all alphas are one matrix
product. Bootstrap seeds are Train count weights ``W`` (:func:`train_counts`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg

from heads.probe.data import ProbeData, labelled
from heads.scoring import uar_score

log = logging.getLogger(__name__)


def _weighted_gram(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:  # noqa: N803
    """Centred weighted Gram matrix ``sum_i w_i (x_i - m)(x_i - m)'`` (float64), m, sum w.

    The product runs in the features' dtype (float32): on standardised features its
    round-off is far below the smallest alpha of the grid (measured: CCC differences below
    1e-6 against a float64 Gram at alpha 0.01, on features with a 1e14 condition number).
    """
    total = float(w.sum())
    w32 = w.astype(X.dtype)
    x_mean = (w32 @ X).astype(np.float64) / total  # (d,)
    Xr = X * np.sqrt(w32)[:, None]
    gram = (Xr.T @ Xr).astype(np.float64) - total * np.outer(x_mean, x_mean)  # X'WX - t m m'
    return gram, x_mean, total


def _weighted_rhs(X: np.ndarray, w: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """``X' W (Y - mean_w(Y))`` (d, k) and ``mean_w(Y)`` (k,)."""
    y_mean = w @ Y / float(w.sum())
    rhs = X.T @ (w[:, None] * (Y - y_mean)).astype(X.dtype)
    return rhs.astype(np.float64), y_mean


class RidgeEigen:
    """Weighted ridge with intercept for many alphas and targets from one eigendecomposition.

    Solves scikit-learn's ``Ridge`` objective ``sum_i w_i ||y_i - x_i b - c||^2 + alpha ||b||^2``
    (the objective of :func:`heads.baselines.ridge_path`). When n >= d, with the centred
    weighted Gram matrix ``G = V diag(s) V'``: ``b = V diag(1/(s + alpha)) V' X'W Yc``. When
    n < d, with ``A = W^(1/2) (X - m)`` and ``AA' = U diag(s) U'``:
    ``b = A'U diag(1/(s + alpha)) U' W^(1/2) Yc``. The decomposition is paid once; each
    alpha costs a diagonal scaling.

    Args:
        X: features, (n, d) (float32 or float64).
        weights: per-row weights (n,) >= 0, or None for 1.

    Example:
        >>> X = np.array([[0.0], [1.0], [2.0]]); Y = np.array([[1.0], [3.0], [5.0]])
        >>> coef, intercept = RidgeEigen(X).path(Y, [2.0])
        >>> coef.round(3).tolist(), intercept.round(3).tolist()
        ([[[1.0]]], [[2.0]])
    """

    def __init__(self, X: np.ndarray, weights: np.ndarray | None = None) -> None:  # noqa: N803
        n, d = X.shape
        self.w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        self.X = X
        self.dual = n < d
        if self.dual:
            total = float(self.w.sum())
            self.x_mean = self.w @ X.astype(np.float64) / total
            root = np.sqrt(self.w)
            A = (X.astype(np.float64) - self.x_mean) * root[:, None]  # (n, d)
            gram = A @ A.T  # (n, n)
        else:
            gram, self.x_mean, total = _weighted_gram(X, self.w)  # (d, d)
        s, vecs = scipy.linalg.eigh(gram, driver="evd", check_finite=False)
        self.s = np.maximum(s, 0.0)  # round-off can make tiny eigenvalues negative
        self.vecs = vecs
        self._atu = A.T @ vecs if self.dual else None  # (d, n)

    def path(self, Y: np.ndarray, alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        """Coefficients (len(alphas), d, k) and intercepts (len(alphas), k)."""
        Y = np.asarray(Y, dtype=np.float64).reshape(len(self.w), -1)
        a = np.asarray(alphas, dtype=np.float64)
        if (a <= 0).any():
            raise ValueError(f"alphas must be > 0, got {list(alphas)}")
        scale = 1.0 / (self.s[None, :, None] + a[:, None, None])  # (A, m, 1)
        if self.dual:
            y_mean = self.w @ Y / float(self.w.sum())
            q = self.vecs.T @ ((Y - y_mean) * np.sqrt(self.w)[:, None])  # (n, k)
            coef = self._atu @ (q[None] * scale)
        else:
            rhs, y_mean = _weighted_rhs(self.X, self.w, Y)
            coef = self.vecs @ ((self.vecs.T @ rhs)[None] * scale)  # (A, d, k)
        intercept = y_mean[None] - np.einsum("d,adk->ak", self.x_mean, coef)
        return coef, intercept


def ridge_refit(X: np.ndarray, weights: np.ndarray, Y: np.ndarray, alpha: float  # noqa: N803
                ) -> tuple[np.ndarray, np.ndarray]:
    """One weighted ridge solution with intercept (the objective of :class:`RidgeEigen`).

    The cheap path for a refit at a known alpha: one Cholesky solve.

    Returns:
        (coef (d, k), intercept (k,)).
    """
    w = np.asarray(weights, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(w), -1)
    gram, x_mean, _ = _weighted_gram(X, w)
    rhs, y_mean = _weighted_rhs(X, w, Y)
    a = gram.copy()
    a.flat[:: a.shape[0] + 1] += alpha
    try:
        coef = scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, overwrite_a=True,
                                                              check_finite=False),
                                      rhs, check_finite=False)
    except np.linalg.LinAlgError:
        log.warning("ridge refit: Cholesky failed at alpha=%g; using a symmetric solve", alpha)
        gram.flat[:: gram.shape[0] + 1] += alpha
        coef = scipy.linalg.solve(gram, rhs, assume_a="sym", check_finite=False)
    return coef, y_mean - x_mean @ coef


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

    The same protocol as ``train --head ridge`` (``heads.baselines.fit_select``): Ridge for
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
    cache: list[tuple[np.ndarray, np.ndarray, RidgeEigen]] = []
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
            coef, intercept = ridge_refit(X[ok_tr], w, Y, fixed[tg.name])
            chosen[tg.name] = float(fixed[tg.name])
        else:
            eig = next((e for r, ww, e in cache
                        if np.array_equal(r, ok_tr) and np.array_equal(ww, w)), None)
            if eig is None:
                eig = RidgeEigen(X[ok_tr], None if (w == 1).all() else w)
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
