"""Linear centred kernel alignment (CKA) between representations of the same clips.

For two matrices X (n, p) and Y (n, q) whose columns are centred over the n clips,

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F * ||Y^T Y||_F)

which equals the normalised HSIC of the linear Gram matrices K = X X^T and L = Y Y^T:
<Kc, Lc>_F / (||Kc||_F ||Lc||_F). It is 1 for identical inputs and invariant to orthogonal
transforms and isotropic scaling of either side; it is not invariant to general invertible
linear maps (that is CCA's property).

:func:`cka_matrix` computes every pair of a list of layers at once, choosing between the
feature-space form (cost ~ L^2 n d^2) and blocks of Gram rows (cost ~ L n^2 d + L^2 n^2), so a
25-layer model against another costs one pass over the data either way.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRAM_BLOCK_ELEMENTS = 8_000_000
"""Largest (layers x block rows x clips) array of Gram rows held at once (64 MB of float64)."""


def centre(x: np.ndarray) -> np.ndarray:
    """``x`` (n, d) as float64 with each column's mean over the rows removed."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a (clips, dims) matrix, got shape {x.shape}")
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same n clips (rows).

    Returns NaN when either side is constant over the clips (its Gram matrix is 0).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a = rng.normal(size=(50, 4))
        >>> round(linear_cka(a, 3.0 * a), 12)
        1.0
    """
    xc, yc = centre(x), centre(y)
    if xc.shape[0] != yc.shape[0]:
        raise ValueError(f"CKA needs the same clips on both sides: {xc.shape[0]} vs {yc.shape[0]} rows")
    cross = np.linalg.norm(yc.T @ xc) ** 2
    norm = np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    return float(cross / norm) if norm > 0 else float("nan")


def cka_matrix(layers: Sequence[np.ndarray], *, method: str = "auto") -> np.ndarray:
    """Linear CKA between every pair of ``layers`` (each (n, d_i), same clips in the same order).

    Args:
        layers: the representations; widths may differ.
        method: ``features`` (cross-covariances), ``gram`` (blocks of Gram rows) or ``auto``
            (the cheaper of the two for these shapes). Both give the same values.

    Returns:
        (L, L) symmetric float64 matrix; NaN rows/columns for constant layers.
    """
    xs = [centre(x) for x in layers]
    if not xs:
        return np.zeros((0, 0))
    n = xs[0].shape[0]
    if any(x.shape[0] != n for x in xs):
        raise ValueError("CKA needs the same clips in every layer: row counts "
                         f"{sorted({x.shape[0] for x in xs})}")
    if method == "auto":
        count = len(xs)
        d = float(np.mean([x.shape[1] for x in xs]))
        method = "features" if count * n * d * d <= n * n * d + count * n * n else "gram"
    if method == "features":
        inner = _inner_features(xs)
    elif method == "gram":
        inner = _inner_gram(xs)
    else:
        raise ValueError(f"method must be auto, features or gram, got {method!r}")
    norms = np.sqrt(np.clip(np.diag(inner), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inner / np.outer(norms, norms)
    out[norms == 0, :] = np.nan
    out[:, norms == 0] = np.nan
    return out


def _inner_features(xs: list[np.ndarray]) -> np.ndarray:
    """<K_i, K_j> = ||X_i^T X_j||_F^2 for every pair."""
    count = len(xs)
    inner = np.empty((count, count))
    for i in range(count):
        for j in range(i, count):
            inner[i, j] = inner[j, i] = np.linalg.norm(xs[i].T @ xs[j]) ** 2
    return inner


def _inner_gram(xs: list[np.ndarray]) -> np.ndarray:
    """<K_i, K_j> summed over blocks of Gram rows: K_i[rows] = X_i[rows] X_i^T."""
    count, n = len(xs), xs[0].shape[0]
    block = max(1, min(n, GRAM_BLOCK_ELEMENTS // max(1, count * n)))
    inner = np.zeros((count, count))
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        grams = np.stack([(x[rows] @ x.T).ravel() for x in xs])  # (L, b * n)
        inner += grams @ grams.T
    return inner
