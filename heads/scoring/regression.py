"""Point metrics of regression targets: CCC (two variants) and MAE.

Names say their direction: ``*_score`` goes up, ``*_error`` goes down. Every function maps
arrays to numbers: no I/O, no globals, no state.

Two CCC variants exist (FIELD_NOTES section 2); a report must say which one it uses:

* :func:`ccc_score`: Lin's concordance with population (1/n) moments, identical to
  ``audmetric.concordance_cc``. The default everywhere.
* :func:`ccc_organisers_score`: what the A-VB / ExVo 2022 organisers' scorer computed: unbiased
  (1/(n-1)) variances, a 1/n covariance, rounded to 4 decimals. Slightly lower.

A task's score is the mean of its per-column CCCs (:func:`mean_ccc`, :func:`mean_ccc_score`).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from heads.scoring.checks import regression_pair

CCC_VARIANTS = ("population", "organisers")
"""Allowed values of ``variant`` in :func:`mean_ccc`."""


# --------------------------------------------------------------------------------------------
# regression
# --------------------------------------------------------------------------------------------


def ccc_from_moments(
    mean_t: np.ndarray,
    mean_p: np.ndarray,
    var_t: np.ndarray,
    var_p: np.ndarray,
    cov: np.ndarray,
) -> np.ndarray:
    """2 cov / (var_t + var_p + (mean_t - mean_p)^2); NaN where the denominator is 0."""
    den = var_t + var_p + (mean_t - mean_p) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, 2.0 * cov / np.where(den > 0, den, 1.0), np.nan)
    return out


def ccc_score(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray) -> float:
    """Lin's concordance correlation coefficient, population (1/n) moments.

    ``2 cov(t, p) / (var(t) + var(p) + (mean(t) - mean(p))^2)`` with every moment divided by
    n. Equal to ``audmetric.concordance_cc`` (without ``ignore_nan``), including its edge
    cases, which this function keeps on purpose so that scores can be compared with
    audEERING's tools:

    * both inputs constant and equal: the denominator is 0 and the result is ``nan``;
    * one input constant (or both constant but different): the covariance is 0, result 0.0;
    * a single sample: ``nan``.

    Args:
        y_true: ground truth, shape (n,).
        y_pred: predictions, shape (n,).

    Returns:
        The CCC in [-1, 1] (or ``nan`` in the cases above).

    Raises:
        ValueError: if an input is not 1-D, the lengths differ, the inputs are empty, or any
            value is NaN or infinite (drop such rows first; nothing is skipped silently).

    Examples:
        >>> ccc_score([0, 1, 2], [0, 1, 1])
        0.6666666666666666
        >>> ccc_score([1, 2, 3], [1, 2, 3])
        1.0
    """
    t, p = regression_pair(y_true, y_pred, allow_2d=False)
    if t.size < 2:
        return float("nan")
    mt, mp = t.mean(), p.mean()
    a, b = t - mt, p - mp
    n = t.size
    return float(ccc_from_moments(mt, mp, a @ a / n, b @ b / n, a @ b / n))


def ccc_organisers_score(
    y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray
) -> float:
    """The challenge organisers' CCC: unbiased variances, 1/n covariance, 4 decimals.

    ``2 cov_n / (var_{n-1}(t) + var_{n-1}(p) + (mean(t) - mean(p))^2)`` rounded to 4
    decimals (FIELD_NOTES section 2). Slightly lower than :func:`ccc_score`; use it only to put
    numbers next to the published A-VB / ExVo 2022 tables, and say so. Edge cases as in
    :func:`ccc_score`: ``nan`` for a single sample or for two equal constant inputs.

    Args:
        y_true: ground truth, shape (n,).
        y_pred: predictions, shape (n,).

    Returns:
        The rounded CCC.

    Raises:
        ValueError: as :func:`ccc_score`.

    Examples:
        >>> ccc_organisers_score([0, 1, 2], [0, 1, 1])
        0.4615
        >>> ccc_organisers_score([0, 1, 2], [0, 1, 2])  # (n-1)/n of a perfect 1.0 for n = 3
        0.6667
    """
    t, p = regression_pair(y_true, y_pred, allow_2d=False)
    n = t.size
    if n < 2:
        return float("nan")
    mt, mp = t.mean(), p.mean()
    a, b = t - mt, p - mp
    value = float(ccc_from_moments(mt, mp, a @ a / (n - 1), b @ b / (n - 1), a @ b / n))
    return value if np.isnan(value) else round(value, 4)


def mean_ccc(
    Y_true: Sequence[Any] | np.ndarray,  # noqa: N803 (matrix notation)
    Y_pred: Sequence[Any] | np.ndarray,  # noqa: N803
    *,
    variant: str = "population",
) -> tuple[float, list[float]]:
    """Per-column CCCs of 2-D targets and their mean (a task's score).

    Args:
        Y_true: ground truth, shape (n, k); a 1-D array counts as one column.
        Y_pred: predictions, same shape.
        variant: ``"population"`` (:func:`ccc_score`, the default) or ``"organisers"``
            (:func:`ccc_organisers_score`; the mean of the rounded per-column values is not rounded
            again).

    Returns:
        ``(mean, per_column)``; the mean is ``nan`` when any column's CCC is ``nan``.

    Raises:
        ValueError: for an unknown ``variant``, shapes that differ or are not 1-D / 2-D,
            empty inputs, NaN or infinite values.

    Examples:
        >>> mean_ccc([[0, 0], [1, 1], [2, 2]], [[0, 0], [1, 1], [1, 2]])
        (0.8333333333333333, [0.6666666666666666, 1.0])
    """
    if variant not in CCC_VARIANTS:
        raise ValueError(f"variant must be one of {CCC_VARIANTS}, got {variant!r}")
    t, p = regression_pair(Y_true, Y_pred, allow_2d=True)
    if t.ndim == 1:
        t, p = t[:, None], p[:, None]
    n = t.shape[0]
    if n < 2:
        per_column = [float("nan")] * t.shape[1]
        return float("nan"), per_column
    # All columns at once, the same arithmetic as ccc_score() / ccc_organisers_score() per column.
    mt, mp = t.mean(axis=0), p.mean(axis=0)
    a, b = t - mt, p - mp
    ss_t, ss_p, cross = (a * a).sum(axis=0), (b * b).sum(axis=0), (a * b).sum(axis=0)
    if variant == "population":
        values = ccc_from_moments(mt, mp, ss_t / n, ss_p / n, cross / n)
        per_column = [float(v) for v in values]
    else:
        values = ccc_from_moments(mt, mp, ss_t / (n - 1), ss_p / (n - 1), cross / n)
        per_column = [float(v) if np.isnan(v) else round(float(v), 4) for v in values]
    return float(np.mean(per_column)), per_column


def mean_ccc_score(
    y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray
) -> float:
    """Mean per-column population CCC as one float (the ``"ccc"`` entry of :data:`METRICS`).

    Args:
        y_true: ground truth, shape (n,) or (n, k).
        y_pred: predictions, same shape.

    Returns:
        ``mean_ccc(y_true, y_pred)[0]``.

    Raises:
        ValueError: as :func:`mean_ccc`.

    Examples:
        >>> mean_ccc_score([0, 1, 2], [0, 1, 1])
        0.6666666666666666
    """
    return mean_ccc(y_true, y_pred, variant="population")[0]


def mean_ccc_organisers_score(
    y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray
) -> float:
    """Mean per-column organisers' CCC as one float (``"ccc_organisers"`` in :data:`METRICS`).

    Args:
        y_true: ground truth, shape (n,) or (n, k).
        y_pred: predictions, same shape.

    Returns:
        ``mean_ccc(y_true, y_pred, variant="organisers")[0]``.

    Raises:
        ValueError: as :func:`mean_ccc`.

    Examples:
        >>> mean_ccc_organisers_score([[0, 0], [1, 1], [2, 2]], [[0, 0], [1, 1], [1, 2]])
        0.5641
    """
    return mean_ccc(y_true, y_pred, variant="organisers")[0]


def mae_error(y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray) -> float:
    """Mean absolute error, over every entry (rows and columns alike).

    Equal to ``audmetric.mean_absolute_error`` for 1-D inputs and to scikit-learn's
    ``mean_absolute_error`` (uniform average over outputs) for 2-D inputs.

    Args:
        y_true: ground truth, shape (n,) or (n, k).
        y_pred: predictions, same shape.

    Returns:
        The MAE (lower is better), in the units of the targets (years for ExVo age).

    Raises:
        ValueError: for shapes that differ, empty inputs, NaN or infinite values.

    Examples:
        >>> mae_error([20, 30, 40], [22, 30, 37])
        1.6666666666666667
    """
    t, p = regression_pair(y_true, y_pred, allow_2d=True)
    return float(np.mean(np.abs(t - p)))
