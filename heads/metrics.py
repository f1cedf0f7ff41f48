"""Pure NumPy metrics for the vocal-burst tasks, and the METRICS registry.

Every function here maps arrays to numbers: no I/O, no globals, no state. Directions:
CCC, UAR and the ExVo score go up, MAE goes down (see :data:`METRICS`).

Two CCC variants exist (FIELD_NOTES section 2); a report must say which one it uses:

* :func:`ccc`: Lin's concordance with population (1/n) moments, identical to
  ``audmetric.concordance_cc``. The default everywhere.
* :func:`ccc_organisers`: what the A-VB / ExVo 2022 organisers' scorer computed: unbiased
  (1/(n-1)) variances, a 1/n covariance, rounded to 4 decimals. Slightly lower.

A task's score is the mean of its per-column CCCs (:func:`mean_ccc`, :func:`mean_ccc_score`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

CCC_VARIANTS = ("population", "organisers")
"""Allowed values of ``variant`` in :func:`mean_ccc`."""


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _as_real(values: Any, name: str) -> np.ndarray:
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


def _regression_pair(
    y_true: Any, y_pred: Any, *, allow_2d: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (truth, prediction) pair of real arrays of equal shape."""
    t = _as_real(y_true, "y_true")
    p = _as_real(y_pred, "y_pred")
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


def _label_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
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


# --------------------------------------------------------------------------------------------
# regression
# --------------------------------------------------------------------------------------------


def _ccc_from_moments(
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


def ccc(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray) -> float:
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
        >>> ccc([0, 1, 2], [0, 1, 1])
        0.6666666666666666
        >>> ccc([1, 2, 3], [1, 2, 3])
        1.0
    """
    t, p = _regression_pair(y_true, y_pred, allow_2d=False)
    if t.size < 2:
        return float("nan")
    mt, mp = t.mean(), p.mean()
    a, b = t - mt, p - mp
    n = t.size
    return float(_ccc_from_moments(mt, mp, a @ a / n, b @ b / n, a @ b / n))


def ccc_organisers(
    y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray
) -> float:
    """The challenge organisers' CCC: unbiased variances, 1/n covariance, 4 decimals.

    ``2 cov_n / (var_{n-1}(t) + var_{n-1}(p) + (mean(t) - mean(p))^2)`` rounded to 4
    decimals (FIELD_NOTES section 2). Slightly lower than :func:`ccc`; use it only to put
    numbers next to the published A-VB / ExVo 2022 tables, and say so. Edge cases as in
    :func:`ccc`: ``nan`` for a single sample or for two equal constant inputs.

    Args:
        y_true: ground truth, shape (n,).
        y_pred: predictions, shape (n,).

    Returns:
        The rounded CCC.

    Raises:
        ValueError: as :func:`ccc`.

    Examples:
        >>> ccc_organisers([0, 1, 2], [0, 1, 1])
        0.4615
        >>> ccc_organisers([0, 1, 2], [0, 1, 2])  # (n-1)/n of a perfect 1.0 for n = 3
        0.6667
    """
    t, p = _regression_pair(y_true, y_pred, allow_2d=False)
    n = t.size
    if n < 2:
        return float("nan")
    mt, mp = t.mean(), p.mean()
    a, b = t - mt, p - mp
    value = float(_ccc_from_moments(mt, mp, a @ a / (n - 1), b @ b / (n - 1), a @ b / n))
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
        variant: ``"population"`` (:func:`ccc`, the default) or ``"organisers"``
            (:func:`ccc_organisers`; the mean of the rounded per-column values is not rounded
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
    t, p = _regression_pair(Y_true, Y_pred, allow_2d=True)
    if t.ndim == 1:
        t, p = t[:, None], p[:, None]
    n = t.shape[0]
    if n < 2:
        per_column = [float("nan")] * t.shape[1]
        return float("nan"), per_column
    # All columns at once, the same arithmetic as ccc() / ccc_organisers() per column.
    mt, mp = t.mean(axis=0), p.mean(axis=0)
    a, b = t - mt, p - mp
    ss_t, ss_p, cross = (a * a).sum(axis=0), (b * b).sum(axis=0), (a * b).sum(axis=0)
    if variant == "population":
        values = _ccc_from_moments(mt, mp, ss_t / n, ss_p / n, cross / n)
        per_column = [float(v) for v in values]
    else:
        values = _ccc_from_moments(mt, mp, ss_t / (n - 1), ss_p / (n - 1), cross / n)
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


def mae(y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray) -> float:
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
        >>> mae([20, 30, 40], [22, 30, 37])
        1.6666666666666667
    """
    t, p = _regression_pair(y_true, y_pred, allow_2d=True)
    return float(np.mean(np.abs(t - p)))


# --------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------


def uar(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
) -> float:
    """Unweighted average recall: the mean over classes of each class's recall.

    Same value as scikit-learn's ``recall_score(average="macro")`` and
    ``audmetric.unweighted_average_recall``: without ``labels``, the classes are those found
    in ``y_true`` or ``y_pred``; a class that never occurs in ``y_true`` has recall 0 (the
    ``zero_division=0`` convention of both libraries), so predicting a class that does not
    exist lowers the score. With ``labels``, only those classes are averaged.

    Args:
        y_true: true classes, shape (n,).
        y_pred: predicted classes, shape (n,).
        labels: the classes to average over; default: all classes seen in either input.

    Returns:
        The UAR in [0, 1]; chance level is 1 / number of classes.

    Raises:
        ValueError: for inputs that are not 1-D, differ in length, are empty or hold NaN;
            for an empty ``labels``.

    Examples:
        >>> uar([0, 0, 1, 1], [0, 1, 1, 1])
        0.75
        >>> uar([0, 0], [0, 1])
        0.25
    """
    t, p = _label_pair(y_true, y_pred)
    if labels is None:
        classes = np.unique(np.concatenate([t, p]))
    else:
        classes = np.asarray(labels)
        if classes.ndim != 1 or classes.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D sequence, got {labels!r}")
    recalls = []
    for c in classes:
        is_c = t == c
        support = int(is_c.sum())
        recalls.append(float((p[is_c] == c).sum()) / support if support else 0.0)
    return float(np.mean(recalls))


def confusion(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    labels: Sequence[Any],
) -> np.ndarray:
    """Confusion matrix of counts: rows are true classes, columns predicted, in ``labels`` order.

    Pairs whose true or predicted class is not in ``labels`` are left out, as in
    scikit-learn's ``confusion_matrix``.

    Args:
        y_true: true classes, shape (n,).
        y_pred: predicted classes, shape (n,).
        labels: the classes, in the order of rows and columns; unique.

    Returns:
        int64 array of shape (len(labels), len(labels)).

    Raises:
        ValueError: for invalid inputs (see :func:`uar`) or empty / repeated ``labels``.

    Examples:
        >>> confusion([0, 0, 1, 2], [0, 1, 1, 1], labels=[0, 1, 2])
        array([[1, 1, 0],
               [0, 1, 0],
               [0, 1, 0]])
    """
    t, p = _label_pair(y_true, y_pred)
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got {labels!r}")
    if np.unique(lab).size != lab.size:
        raise ValueError(f"labels must be unique, got {labels!r}")
    k = lab.size
    order = np.argsort(lab, kind="stable")
    sorted_lab = lab[order]

    def positions(values: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(sorted_lab, values), 0, k - 1)
        return np.where(sorted_lab[pos] == values, order[pos], -1)

    ti, pi = positions(t), positions(p)
    keep = (ti >= 0) & (pi >= 0)
    return np.bincount(ti[keep] * k + pi[keep], minlength=k * k).reshape(k, k).astype(np.int64)


# --------------------------------------------------------------------------------------------
# ExVo multitask score
# --------------------------------------------------------------------------------------------


def exvo_score(ccc: float, uar: float, mae: float) -> float:
    """ExVo 2022 multitask score: harmonic mean of (mean emotion CCC, country UAR, 1 / age MAE).

    Computed as ``3 / (1/ccc + 1/uar + mae)``, so an MAE of exactly 0 is the limit
    ``1/MAE -> inf`` rather than a division by zero.

    A harmonic mean is only defined for positive numbers. A mean CCC <= 0 (no agreement at
    all) or a UAR of 0 would make the formula return a negative, infinite or meaningless
    number that could rank a useless system above a useful one; the score is then 0.0, the
    limit of the harmonic mean as that component goes to 0 from above.

    Args:
        ccc: mean CCC over the 10 emotion columns.
        uar: country UAR.
        mae: age MAE in years (>= 0).

    Returns:
        The score (higher is better); 0.0 when ``ccc <= 0`` or ``uar <= 0``.

    Raises:
        ValueError: if a component is NaN / infinite or ``mae`` is negative.

    Examples:
        >>> round(exvo_score(0.4900, 0.5010, 3.9952), 4)
        0.3735
        >>> exvo_score(-0.1, 0.5, 4.0)
        0.0
    """
    for name, value in (("ccc", ccc), ("uar", uar), ("mae", mae)):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if mae < 0:
        raise ValueError(f"mae must be >= 0 (an absolute error), got {mae!r}")
    if ccc <= 0 or uar <= 0:
        logger.debug("exvo_score: non-positive component (ccc=%s, uar=%s) -> 0.0", ccc, uar)
        return 0.0
    return float(3.0 / (1.0 / ccc + 1.0 / uar + mae))


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------

# Vectorised bootstrap: a resample is a vector of counts w (how often each row was drawn,
# sum n), and moment-based metrics of a resample are weighted moments, so a whole chunk of
# resamples is one matrix product W @ M. Each function maps (W (b, n), y_true, y_pred) to
# (b,) values equal to calling the metric on the resampled rows.


def _moments(w: np.ndarray, t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted means, population variances and covariance per resample and column."""
    n = t.shape[0]
    t2 = t.reshape(n, -1)
    p2 = p.reshape(n, -1)
    # Shift both by the same per-column constant (the truth's mean): raw moments of centred
    # data lose less precision, and a common shift keeps mean(t) - mean(p) unchanged.
    shift = t2.mean(axis=0)
    t2 = t2 - shift
    p2 = p2 - shift
    k = t2.shape[1]
    m = w @ np.concatenate([t2, p2, t2 * t2, p2 * p2, t2 * p2], axis=1) / n  # (b, 5k)
    mt, mp, mtt, mpp, mtp = (m[:, i * k : (i + 1) * k] for i in range(5))
    var_t = np.maximum(mtt - mt**2, 0.0)
    var_p = np.maximum(mpp - mp**2, 0.0)
    cov = mtp - mt * mp
    # A resample whose rows are all equal has zero variance up to round-off; snap it to 0 so
    # the edge cases of ccc() are kept.
    tol_t = 1e-12 * (np.mean(t2 * t2, axis=0) + np.finfo(float).tiny)
    tol_p = 1e-12 * (np.mean(p2 * p2, axis=0) + np.finfo(float).tiny)
    var_t = np.where(var_t <= tol_t, 0.0, var_t)
    var_p = np.where(var_p <= tol_p, 0.0, var_p)
    cov = np.where((var_t == 0) | (var_p == 0), 0.0, cov)
    return mt, mp, var_t, var_p, cov


def _ccc_batched(w: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    mt, mp, vt, vp, cov = _moments(w, t, p)
    return _ccc_from_moments(mt, mp, vt, vp, cov).mean(axis=1)


def _ccc_organisers_batched(w: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    n = t.shape[0]
    mt, mp, vt, vp, cov = _moments(w, t, p)
    # Built-in round() on each value keeps this bit-equal to ccc_organisers (np.round may
    # differ in the last place).
    per_col = _ccc_from_moments(mt, mp, vt * n / (n - 1), vp * n / (n - 1), cov)
    rounded = np.vectorize(lambda v: v if np.isnan(v) else round(float(v), 4))(per_col)
    return rounded.mean(axis=1)


def _mae_batched(w: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    n = t.shape[0]
    err = np.abs(t - p).reshape(n, -1).mean(axis=1)
    return w @ err / n


def _uar_batched(w: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
    classes, codes = np.unique(np.concatenate([t, p]), return_inverse=True)
    n, c = t.shape[0], classes.size
    tc, pc = codes[:n], codes[n:]
    onehot_t = np.zeros((n, c))
    onehot_t[np.arange(n), tc] = 1.0
    onehot_p = np.zeros((n, c))
    onehot_p[np.arange(n), pc] = 1.0
    support = w @ onehot_t  # (b, c)
    hits = w @ (onehot_t * (tc == pc)[:, None])
    present = (support > 0) | (w @ onehot_p > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, hits / np.where(support > 0, support, 1.0), 0.0)
    return (recall * present).sum(axis=1) / present.sum(axis=1)


_BATCHED: dict[Callable[..., float], Callable[..., np.ndarray]] = {
    ccc: _ccc_batched,
    ccc_organisers: _ccc_organisers_batched,
    mean_ccc_score: _ccc_batched,
    mean_ccc_organisers_score: _ccc_organisers_batched,
    mae: _mae_batched,
    uar: _uar_batched,
}

_CHUNK_ELEMENTS = 4_000_000  # row indices drawn at once (32 MB); bounds memory for large n


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a metric, resampling rows.

    Rows are drawn with replacement, truth and prediction together (for 2-D targets a row
    keeps all its columns). The interval is the ``alpha/2`` and ``1 - alpha/2`` percentiles
    of the metric over ``n_boot`` resamples. Resamples on which the metric is ``nan`` (e.g. a
    constant resample for CCC) are left out, with a log message.

    For :func:`ccc`, :func:`ccc_organisers`, :func:`mean_ccc_score`,
    :func:`mean_ccc_organisers_score`, :func:`mae` and :func:`uar` (passed as themselves,
    e.g. ``METRICS["ccc"].fn``) all resamples are evaluated at once from per-row counts and
    one matrix product; any other callable is called once per resample on the same
    resamples (same seed, same rows, same interval up to round-off).

    Args:
        metric_fn: ``metric_fn(y_true, y_pred) -> float``.
        y_true: truth, shape (n,) or (n, k).
        y_pred: predictions, same number of rows.
        n_boot: number of resamples (>= 1).
        alpha: 1 - confidence level, in (0, 1).
        seed: seed of the ``numpy.random.Generator`` that draws the rows.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when the metric is ``nan`` on every resample.

    Raises:
        ValueError: for ``n_boot < 1``, ``alpha`` outside (0, 1), row counts that differ or
            fewer than 2 rows; whatever ``metric_fn`` raises on the full data.

    Examples:
        >>> low, high = bootstrap_ci(mae, [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.5], n_boot=200)
        >>> 0.0 <= low <= mae([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.5]) <= high
        True
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim == 0 or p.ndim == 0 or t.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true and y_pred must have the same number of rows, got shapes {t.shape} "
            f"and {p.shape}"
        )
    n = t.shape[0]
    if n < 2:
        raise ValueError(f"bootstrap_ci needs at least 2 rows, got {n}")
    # The point estimate validates the inputs with the metric's own checks (NaN, shapes).
    point = metric_fn(t, p)
    batched = _BATCHED.get(metric_fn)
    if batched is not None and metric_fn is not uar:
        t, p = t.astype(np.float64), p.astype(np.float64)

    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _CHUNK_ELEMENTS // n))
    stats = np.empty(n_boot, dtype=np.float64)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))  # (b, n) row indices
        if batched is not None:
            flat = (idx + (np.arange(b) * n)[:, None]).ravel()
            w = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
            stats[done : done + b] = batched(w, t, p)
        else:
            for i in range(b):
                stats[done + i] = metric_fn(t[idx[i]], p[idx[i]])
        done += b

    finite = stats[~np.isnan(stats)]
    if finite.size < n_boot:
        logger.info(
            "bootstrap_ci: metric was nan on %d of %d resamples; left out",
            n_boot - finite.size,
            n_boot,
        )
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    logger.debug("bootstrap_ci: point %.4f, CI [%.4f, %.4f]", point, low, high)
    return float(low), float(high)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

METRIC_TARGETS = ("regression", "classification", "aggregate")
"""What a metric scores: regression arrays, class labels, or already computed components."""


@dataclass(frozen=True)
class MetricInfo:
    """One entry of :data:`METRICS`.

    Attributes:
        fn: the metric function. For ``target`` ``"regression"`` / ``"classification"``:
            ``fn(y_true, y_pred) -> float``; for ``"aggregate"``: it takes the components
            (:func:`exvo_score`).
        greater_is_better: direction, for model selection and report arrows.
        description: one line for CLI listings and reports.
        target: one of :data:`METRIC_TARGETS`.
    """

    fn: Callable[..., float]
    greater_is_better: bool
    description: str
    target: str


METRICS: dict[str, MetricInfo] = {
    "ccc": MetricInfo(
        mean_ccc_score,
        True,
        "mean per-column Lin's CCC, population moments (= audmetric.concordance_cc)",
        "regression",
    ),
    "ccc_organisers": MetricInfo(
        mean_ccc_organisers_score,
        True,
        "mean per-column CCC as the 2022 organisers scored it: 1/(n-1) variances, 4 decimals",
        "regression",
    ),
    "uar": MetricInfo(uar, True, "unweighted average recall (macro recall)", "classification"),
    "mae": MetricInfo(mae, False, "mean absolute error (target units)", "regression"),
    "exvo": MetricInfo(
        exvo_score,
        True,
        "ExVo 2022 harmonic mean of (emotion CCC, country UAR, 1 / age MAE)",
        "aggregate",
    ),
}
"""Metric name -> :class:`MetricInfo`. CLI choices and contract tests come from this dict."""
