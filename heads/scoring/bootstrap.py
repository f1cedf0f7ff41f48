"""THE bootstrap: percentile confidence intervals over clips, every resample at once.

One resampling scheme serves every caller (``train``'s run CI, ``probe``, ``finetune``, a
single metric): :class:`Resamples` draws ``n_boot`` resamples of ``n`` rows with
``numpy.random.default_rng(seed).integers(0, n, (b, n))`` and keeps them as count matrices
``W`` (how often each row was drawn). Metrics built from moments (CCC, MAE, recall) of a
resample are then weighted moments, so a whole chunk of resamples is one matrix product.
A study that scores several systems on the same clips (the layers of a probe) passes the same
:class:`Resamples` to each: the comparison is paired, not blurred by different draws.

The per-resample scores follow the point metrics exactly (tests compare them with the point
metric on the resampled rows): population CCC per column (NaN truth left out per column),
MAE, and UAR over the classes found in the resample's truth or prediction
(:mod:`heads.scoring`'s rule). The interval is the ``alpha/2`` and ``1 - alpha/2``
percentiles (NumPy's linear rule) of the finite resample scores.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Callable, Sequence

import numpy as np

from data.tasks import Task
from heads.scoring.classification import uar_score
from heads.scoring.regression import (ccc_from_moments, ccc_organisers_score, ccc_score,
                                      mae_error, mean_ccc_organisers_score, mean_ccc_score)

logger = logging.getLogger(__name__)

CI_LEVEL = 0.95
"""Level of the percentile bootstrap intervals."""


class Resamples:
    """Bootstrap resamples of ``n`` rows as count matrices, identical on every call.

    Args:
        n: number of rows (clips).
        n_boot: number of resamples.
        seed: generator seed.
        chunk_elements: largest count matrix built at once (bounds memory); matrices are kept
            when all resamples fit in one chunk.
    """

    def __init__(self, n: int, n_boot: int, seed: int = 0, *,
                 chunk_elements: int = 16_000_000) -> None:
        self.n, self.n_boot, self.seed = n, n_boot, seed
        self.chunk = max(1, min(n_boot, chunk_elements // max(1, n)))
        self._cache: list[np.ndarray] | None = None

    def _make(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        done = 0
        while done < self.n_boot:
            b = min(self.chunk, self.n_boot - done)
            idx = rng.integers(0, self.n, size=(b, self.n))
            flat = (idx + (np.arange(b) * self.n)[:, None]).ravel()
            yield np.bincount(flat, minlength=b * self.n).reshape(b, self.n).astype(np.float64)
            done += b

    def chunks(self) -> Iterator[np.ndarray]:
        """Count matrices (b, n): how often each row is drawn in each resample."""
        if self._cache is not None:
            yield from self._cache
            return
        if self.chunk >= self.n_boot:
            self._cache = list(self._make())
            yield from self._cache
            return
        yield from self._make()

    def apply(self, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``fn(W) -> (b,)`` over every chunk, concatenated: (n_boot,) resample scores."""
        return np.concatenate([np.asarray(fn(W), dtype=np.float64) for W in self.chunks()])


def percentile_ci(stats: np.ndarray, alpha: float = 1 - CI_LEVEL) -> tuple[float, float]:
    """``(low, high)`` percentiles of the finite resample scores; NaN when none is finite."""
    finite = stats[np.isfinite(stats)]
    if finite.size < stats.size:
        logger.info("bootstrap: score undefined on %d of %d resamples; left out",
                    stats.size - finite.size, stats.size)
    if finite.size == 0:
        return float("nan"), float("nan")
    return float(np.quantile(finite, alpha / 2)), float(np.quantile(finite, 1 - alpha / 2))


# --------------------------------------------------------------------------------------------
# scores of every resample at once (W: (b, n) counts)
# --------------------------------------------------------------------------------------------


def nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Mean of each row over its finite entries; NaN for a row with none."""
    ok = np.isfinite(a)
    cnt = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.where(ok, a, 0.0).sum(axis=1) / np.maximum(cnt, 1), np.nan)


def resampled_ccc(W: np.ndarray, t: np.ndarray, p: np.ndarray, *,  # noqa: N803
                  organisers: bool = False) -> np.ndarray:
    """Per-column CCC of each resample (b, k); rows with NaN truth left out per column.

    Population moments (:func:`heads.scoring.ccc_score`), or with ``organisers`` the
    organisers' form (1/(n-1) variances, 4 decimals; :func:`heads.scoring.ccc_organisers_score`).
    """
    t = t.reshape(t.shape[0], -1).astype(np.float64)
    p = p.reshape(p.shape[0], -1).astype(np.float64)
    mask = np.isfinite(t)
    m = mask.astype(np.float64)
    # A common per-column shift (the truth's mean) keeps the raw moments precise.
    shift = np.where(mask, t, 0.0).sum(axis=0) / np.maximum(m.sum(axis=0), 1)
    tc = np.where(mask, t - shift, 0.0)
    pc = np.where(mask, p - shift, 0.0)
    k = t.shape[1]
    s = W @ np.concatenate([m, tc, pc, tc * tc, pc * pc, tc * pc], axis=1)  # (b, 6k)
    cnt, st, sp, stt, spp, stp = (s[:, i * k:(i + 1) * k] for i in range(6))
    with np.errstate(invalid="ignore", divide="ignore"):
        mt, mp = st / cnt, sp / cnt
        vt = np.maximum(stt / cnt - mt ** 2, 0.0)
        vp = np.maximum(spp / cnt - mp ** 2, 0.0)
        cov = stp / cnt - mt * mp
        # A resample whose rows are all equal has zero variance up to round-off: snap it to
        # 0 so that the edge cases of ccc_score are kept.
        vt = np.where(vt <= 1e-12 * (stt / cnt + np.finfo(float).tiny), 0.0, vt)
        vp = np.where(vp <= 1e-12 * (spp / cnt + np.finfo(float).tiny), 0.0, vp)
        cov = np.where((vt == 0) | (vp == 0), 0.0, cov)
        if organisers:
            unbias = cnt / np.maximum(cnt - 1, 1)
            vt, vp = vt * unbias, vp * unbias
        out = ccc_from_moments(mt, mp, vt, vp, cov)
    out = np.where(cnt >= 2, out, np.nan)
    if organisers:
        # Built-in round() per value keeps this bit-equal to ccc_organisers_score.
        out = np.vectorize(lambda v: v if np.isnan(v) else round(float(v), 4))(out)
    return out


def resampled_mae(W: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:  # noqa: N803
    """MAE of each resample (b,) over every labelled entry (NaN truth left out)."""
    t = t.reshape(t.shape[0], -1)
    p = p.reshape(p.shape[0], -1)
    mask = np.isfinite(t)
    err = np.where(mask, np.abs(np.where(mask, t, 0.0) - p), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (W @ err.sum(axis=1)) / (W @ mask.sum(axis=1).astype(np.float64))


def resampled_uar(W: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:  # noqa: N803
    """UAR of each resample (b,): mean recall over the classes in its truth or prediction.

    ``t`` and ``p`` are class labels of any kind; rows whose truth is a negative integer code
    (a missing label) are left out.
    """
    valid = t >= 0 if t.dtype.kind in "iu" else np.ones(len(t), dtype=bool)
    classes, codes = np.unique(np.concatenate([t[valid], p[valid]]), return_inverse=True)
    n_valid, c = int(valid.sum()), classes.size
    tc, pc = codes[:n_valid], codes[n_valid:]
    Wv = W[:, valid]  # noqa: N806
    onehot_t = np.zeros((n_valid, c))
    onehot_t[np.arange(n_valid), tc] = 1.0
    onehot_p = np.zeros((n_valid, c))
    onehot_p[np.arange(n_valid), pc] = 1.0
    support = Wv @ onehot_t  # (b, c)
    hits = Wv @ (onehot_t * (tc == pc)[:, None])
    present = (support > 0) | (Wv @ onehot_p > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, hits / np.where(support > 0, support, 1.0), 0.0)
        return (recall * present).sum(axis=1) / present.sum(axis=1)


def headline_resamples(task: Task, truths: dict[str, np.ndarray], preds: dict[str, np.ndarray],
                       W: np.ndarray) -> np.ndarray:  # noqa: N803
    """The task headline on each resample (b,): ``score_task`` on the resampled rows.

    Args:
        task: the task.
        truths, preds: per target, the scored rows (as :func:`heads.scoring.score_task` takes
            them: regression (n, k) with NaN for a missing label, classes (n,) with -1).
        W: (b, n) draw counts of each row in each resample.
    """
    per_target: dict[str, tuple[str, np.ndarray]] = {}
    ccc_cols = []
    for tg in task.targets:
        t, p = truths[tg.name], preds[tg.name]
        if tg.kind == "classification":
            per_target[tg.name] = ("uar", resampled_uar(W, t, p))
            continue
        cols = resampled_ccc(W, t, p)
        ccc_cols.append(cols)
        score = nanmean_rows(cols) if tg.metric == "ccc" else resampled_mae(W, t, p)
        per_target[tg.name] = (tg.metric, score)
    if task.headline == "ccc":
        return nanmean_rows(np.concatenate(ccc_cols, axis=1))
    if task.headline == "exvo":
        c, u, m = (next(s for mt, s in per_target.values() if mt == k) for k in ("ccc", "uar", "mae"))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where((c > 0) & (u > 0), 3.0 / (1.0 / c + 1.0 / u + m), 0.0)
        return np.where(np.isfinite(c) & np.isfinite(u) & np.isfinite(m), out, np.nan)
    return next(s for mt, s in per_target.values() if mt == task.headline)


def task_ci(task: Task, truths: dict[str, np.ndarray], preds: dict[str, np.ndarray], *,
            n_boot: int = 500, seed: int = 0, alpha: float = 1 - CI_LEVEL,
            resamples: Resamples | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of the task headline, resampling clips (rows) jointly.

    ``(nan, nan)`` for fewer than 3 rows or ``n_boot <= 0``. ``resamples`` (of the same rows)
    replaces ``n_boot`` / ``seed`` when given.
    """
    n = len(next(iter(truths.values())))
    if resamples is None:
        if n < 3 or n_boot <= 0:
            return float("nan"), float("nan")
        resamples = Resamples(n, n_boot, seed)
    return percentile_ci(resamples.apply(lambda W: headline_resamples(task, truths, preds, W)),
                         alpha)


# --------------------------------------------------------------------------------------------
# one metric
# --------------------------------------------------------------------------------------------

_RESAMPLED: dict[Callable[..., float], Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    ccc_score: lambda W, t, p: resampled_ccc(W, t, p).mean(axis=1),
    mean_ccc_score: lambda W, t, p: resampled_ccc(W, t, p).mean(axis=1),
    ccc_organisers_score: lambda W, t, p: resampled_ccc(W, t, p, organisers=True).mean(axis=1),
    mean_ccc_organisers_score:
        lambda W, t, p: resampled_ccc(W, t, p, organisers=True).mean(axis=1),
    mae_error: resampled_mae,
    uar_score: resampled_uar,
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
    """Percentile bootstrap confidence interval of one metric, resampling rows.

    Rows are drawn with replacement, truth and prediction together (for 2-D targets a row
    keeps all its columns), by :class:`Resamples`. Resamples on which the metric is ``nan``
    (e.g. a constant resample for CCC) are left out, with a log message.

    For :func:`~heads.scoring.ccc_score`, :func:`~heads.scoring.ccc_organisers_score`,
    :func:`~heads.scoring.mean_ccc_score`, :func:`~heads.scoring.mean_ccc_organisers_score`,
    :func:`~heads.scoring.mae_error` and :func:`~heads.scoring.uar_score` (passed as
    themselves) all resamples are evaluated at once as weighted moments; any other callable is
    called once per resample on the same resamples (same seed, same rows, same interval up to
    round-off).

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
        >>> t, p = [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.5]
        >>> low, high = bootstrap_ci(mae_error, t, p, n_boot=200)
        >>> 0.0 <= low <= mae_error(t, p) <= high
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
    metric_fn(t, p)  # validates the inputs with the metric's own checks (NaN, shapes)
    resamples = Resamples(n, n_boot, seed, chunk_elements=_CHUNK_ELEMENTS)
    batched = _RESAMPLED.get(metric_fn)
    if batched is not None:
        if metric_fn is not uar_score:
            t, p = t.astype(np.float64), p.astype(np.float64)
        stats = resamples.apply(lambda W: batched(W, t, p))
    else:
        stats = resamples.apply(lambda W: np.array([
            metric_fn(t[rows], p[rows]) for rows in (np.repeat(np.arange(n), w.astype(np.int64))
                                                     for w in W)]))
    return percentile_ci(stats, alpha)
