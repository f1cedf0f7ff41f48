"""THE ridge solver (weighted, with intercept) and the ``ridge`` head.

:class:`RidgeSolver` solves scikit-learn's ``Ridge`` objective
``min_b,c sum_i w_i ||y_i - x_i b - c||^2 + alpha ||b||^2`` (sample weights not normalised)
for one set of rows and weights, from ONE centred weighted Gram matrix built once: the
primal ``G = Xc' W Xc`` (d, d) when n >= d, else the dual ``K = A A'`` (n, n) with
``A = W^(1/2) Xc``. Two ways to use it, chosen by cost, same solution up to round-off:

* :meth:`RidgeSolver.solve`: one Cholesky solve of ``G + alpha I`` (or ``K + alpha I``) per
  alpha. ``train --head ridge`` walks its grid with it: on a 2-core machine, with 20,000 x
  6,373 ComParE features, the Gram costs about 10 s and each Cholesky about 1.5 s, while an
  eigendecomposition costs about 35 s, so 13 Cholesky solves are the cheaper path.
* :meth:`RidgeSolver.path`: one eigendecomposition ``G = V diag(s) V'`` (paid once, cached)
  gives every alpha at once, ``b(alpha) = V diag(1/(s + alpha)) V' X'W Yc``; the probe
  (768-dim layers, many targets and seeds) uses it, Val predictions of every alpha being one
  matrix product.

The Gram product runs in the features' dtype: the probe passes float32 (on standardised
features its round-off is far below the smallest alpha of the grid: CCC differences below
1e-6 against a float64 Gram at alpha 0.01 on features with a 1e14 condition number), the
``ridge`` head float64. The selected coefficients of the head are written into a scikit-learn
``Ridge`` / ``RidgeClassifier`` (same solution as its own ``fit``; tested).
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, Sequence

import numpy as np
import scipy.linalg
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.preprocessing import LabelBinarizer

from heads.base import register_head
from heads.classical.selection import ClassicalHead, GridBest, Params, Problem, SearchResult

logger = logging.getLogger(__name__)

RIDGE_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 4, 13))
"""The default alpha grid of ``ridge`` (and of ``logreg`` on regression targets, the probe)."""


def check_alphas(alphas: Sequence[float]) -> None:
    """Raise ValueError for a non-positive alpha."""
    bad = [a for a in alphas if not a > 0]
    if bad:
        raise ValueError(f"alphas must be > 0, got {bad}")


def spd_solve(matrix: np.ndarray, alpha: float, rhs: np.ndarray) -> np.ndarray:
    """Solve (matrix + alpha I) x = rhs by Cholesky; symmetric LU if round-off breaks it."""
    a = matrix.copy()
    a.flat[:: a.shape[0] + 1] += alpha
    try:
        factor = scipy.linalg.cho_factor(a, lower=False, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(factor, rhs, check_finite=False)
    except np.linalg.LinAlgError:
        logger.warning("ridge: Cholesky failed at alpha=%g; using a symmetric solve", alpha)
        a = matrix.copy()
        a.flat[:: a.shape[0] + 1] += alpha
        return scipy.linalg.solve(a, rhs, assume_a="sym", check_finite=False)


class RidgeSolver:
    """Weighted ridge with intercept for any alphas and targets from one Gram matrix.

    Args:
        X: features, (n, d) (float32 or float64; the Gram product runs in this dtype).
        weights: per-row weights (n,) >= 0, or None for 1.

    Raises:
        ValueError: X not 2-D or weights of another length.

    Example:
        >>> X = np.array([[0.0], [1.0], [2.0]]); Y = np.array([[1.0], [3.0], [5.0]])
        >>> coef, intercept = RidgeSolver(X).solve(Y, 2.0)
        >>> coef.round(3).tolist(), intercept.round(3).tolist()
        ([[1.0]], [2.0])
        >>> coefs, intercepts = RidgeSolver(X).path(Y, [2.0])
        >>> coefs.round(3).tolist(), intercepts.round(3).tolist()
        ([[[1.0]]], [[2.0]])
    """

    def __init__(self, X: np.ndarray, weights: np.ndarray | None = None) -> None:  # noqa: N803
        if X.ndim != 2:
            raise ValueError(f"X must be (n, d), got shape {X.shape}")
        n, d = X.shape
        self.w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        if self.w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {self.w.shape}")
        self.X = X
        self.total = float(self.w.sum())
        self.dual = n < d
        w = self.w.astype(X.dtype)
        if self.dual:
            self.x_mean = self.w @ X.astype(np.float64) / self.total
            self.A = (X.astype(np.float64) - self.x_mean) * np.sqrt(self.w)[:, None]  # (n, d)
            self.gram = self.A @ self.A.T  # (n, n)
        else:
            self.x_mean = (w @ X).astype(np.float64) / self.total  # (d,)
            Xr = X * np.sqrt(w)[:, None]  # noqa: N806
            # X'WX - total m m' = Xc' W Xc
            self.gram = (Xr.T @ Xr).astype(np.float64) - self.total * np.outer(self.x_mean,
                                                                               self.x_mean)
        self._eig: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None

    def _rhs(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        """Primal ``X' W Yc`` (d, k) or dual ``W^(1/2) Yc`` (n, k), and ``mean_w(Y)`` (k,)."""
        Y = np.asarray(Y, dtype=np.float64).reshape(len(self.w), -1)  # noqa: N806
        y_mean = self.w @ Y / self.total
        if self.dual:
            return (Y - y_mean) * np.sqrt(self.w)[:, None], y_mean
        rhs = self.X.T @ (self.w[:, None] * (Y - y_mean)).astype(self.X.dtype)
        return rhs.astype(np.float64), y_mean

    def solve(self, Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        """One alpha by a Cholesky solve: (coef (d, k), intercept (k,))."""
        check_alphas([alpha])
        rhs, y_mean = self._rhs(Y)
        sol = spd_solve(self.gram, float(alpha), rhs)
        coef = self.A.T @ sol if self.dual else sol
        return coef, y_mean - self.x_mean @ coef

    def path(self, Y: np.ndarray, alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        """Every alpha from one eigendecomposition: coefs (A, d, k), intercepts (A, k)."""
        a = np.asarray(alphas, dtype=np.float64)
        if (a <= 0).any():
            raise ValueError(f"alphas must be > 0, got {list(alphas)}")
        if self._eig is None:
            s, vecs = scipy.linalg.eigh(self.gram, driver="evd", check_finite=False)
            s = np.maximum(s, 0.0)  # round-off can make tiny eigenvalues negative
            self._eig = (s, vecs, self.A.T @ vecs if self.dual else None)
        s, vecs, atu = self._eig
        rhs, y_mean = self._rhs(Y)
        scale = 1.0 / (s[None, :, None] + a[:, None, None])  # (A, m, 1)
        if self.dual:
            coef = atu @ ((vecs.T @ rhs)[None] * scale)
        else:
            coef = vecs @ ((vecs.T @ rhs)[None] * scale)  # (A, d, k)
        intercept = y_mean[None] - np.einsum("d,adk->ak", self.x_mean, coef)
        return coef, intercept


def ridge_search(
    head_name: str, problem: Problem, grid: list[Params]
) -> tuple[list[tuple[Params, float]], GridBest]:
    """Alpha search of Ridge / RidgeClassifier: one :class:`RidgeSolver`, one solve per alpha."""
    start = time.perf_counter()
    X, X_val = problem.X, problem.X_val
    if problem.kind == "regression":
        Y = problem.y.reshape(len(problem.y), -1)
        weights = None
        binarizer = None
    else:
        binarizer = LabelBinarizer(pos_label=1, neg_label=-1).fit(problem.y)
        Y = binarizer.transform(problem.y).astype(np.float64)  # (n, 1) binary or (n, C)
        weights = problem.sample_weight
    X_val64 = np.asarray(X_val, dtype=np.float64)
    best = GridBest(problem.greater_is_better)
    scores: list[tuple[Params, float]] = []
    check_alphas([p["alpha"] for p in grid])
    solver = RidgeSolver(np.asarray(X, dtype=np.float64), weights)
    for params in grid:
        alpha = float(params["alpha"])
        coef, intercept = solver.solve(Y, alpha)
        decision = X_val64 @ coef + intercept  # (m, k)
        if problem.kind == "regression":
            prediction = decision
        elif decision.shape[1] == 1:
            prediction = (decision[:, 0] > 0).astype(np.int64)
        else:
            prediction = decision.argmax(axis=1)
        score = problem.score(prediction)
        scores.append((params, score))
        best.offer(
            params,
            score,
            functools.partial(
                ridge_estimator, problem, alpha, coef, intercept, binarizer
            ),
        )
        logger.debug("%s %s alpha=%g: val score %.4f", head_name, problem.kind, alpha, score)
    logger.debug("%s: %d alphas in %.1f s", head_name, len(grid), time.perf_counter() - start)
    return scores, best


def ridge_estimator(
    problem: Problem,
    alpha: float,
    coef: np.ndarray,
    intercept: np.ndarray,
    binarizer: LabelBinarizer | None,
) -> Ridge | RidgeClassifier:
    """A scikit-learn Ridge / RidgeClassifier carrying a solution of :class:`RidgeSolver`.

    The attributes are those its own ``fit`` sets (tests compare with ``fit``).
    """
    n_features = problem.X.shape[1]
    if binarizer is None:
        model: Ridge | RidgeClassifier = Ridge(alpha=alpha)
        if problem.y.ndim == 1:
            model.coef_ = coef[:, 0].copy()
            model.intercept_ = float(intercept[0])
        else:
            model.coef_ = coef.T.copy()
            model.intercept_ = intercept.copy()
    else:
        model = RidgeClassifier(alpha=alpha, class_weight="balanced")
        # Binary: sklearn's fit stores coef_ as (d,) and intercept_ as (1,).
        model.coef_ = coef[:, 0].copy() if coef.shape[1] == 1 else coef.T.copy()
        model.intercept_ = intercept.copy()
        model.classes_ = binarizer.classes_
        model._label_binarizer = binarizer  # what RidgeClassifier.fit stores for predict
    model.n_features_in_ = n_features
    return model


@register_head
class RidgeHead(ClassicalHead):
    """Ridge regression / RidgeClassifier, alpha chosen on Val along one shared Gram matrix."""

    seeded = False  # a convex / deterministic fit: every seed gives the same model

    name = "ridge"
    description = "Ridge / RidgeClassifier (balanced), alpha in logspace(-2, 4, 13)"

    def default_grid(self, kind: str, n_train: int) -> list[Params]:
        return [{"alpha": a} for a in RIDGE_ALPHAS]

    def grid_keys(self, kind: str) -> frozenset[str]:
        return frozenset({"alpha"})

    def required_keys(self, kind: str) -> frozenset[str]:
        return frozenset({"alpha"})

    def build(self, kind: str, params: Params, problem: Problem) -> Any:
        if kind == "regression":
            return Ridge(alpha=params["alpha"])
        return RidgeClassifier(alpha=params["alpha"], class_weight="balanced")

    def search(self, problem: Problem, grid: list[Params]) -> SearchResult:
        return ridge_search(self.name, problem, grid)
