"""Layer probing: one light head per (layer, pooling) of an SSL feature set, over several seeds.

A probe study reads the pooled SSL fields of one feature set (``pooled_<pooling>``, shape
``(n_layers, hidden)`` per clip) from the store, one layer at a time, fits a head on Train,
selects its hyper-parameters on Val and reports the Val score of every (layer, pooling)::

    WORKDIR/probes/<name>/probe.json    configuration, every (layer, pooling) result, the best
    WORKDIR/probes/<name>/probe.csv     one row per layer; per pooling: score, CI, std
    WORKDIR/probes/<name>/layer_weights.csv   (--weighted-sum) learned layer weights

Nothing is extracted here: a layer that is not stored is an error naming the extract to run.

Protocol (the same as ``train``): features standardised on Train; hyper-parameters chosen on
Val; the reported score is on Val (and on Test when Test has labels). Regression predictions
are clipped to a target's known range after selection, as ``heads.experiment`` does.

What a seed changes. Torch and XGBoost heads: initialisation and batch order. Ridge is a
deterministic convex fit, so a seed selects the training set: seed 0 fits on all of Train and
chooses alpha on Val; seed k > 0 refits that alpha on a bootstrap resample of Train
(``numpy.random.default_rng(k)``). The ``std`` across seeds is therefore training-set (and
initialisation) variability.

Confidence intervals: 95 % percentile bootstrap over Val clips of the seed-mean score. The
same ``n_boot`` resamples of Val clips are used for every layer and pooling (paired), so
differences between layers are not blurred by different draws. The CI is about Val
sampling; the seed spread is reported separately as ``std``.

Speed (ridge). Each layer is read once per pooling (``FeatureStore.read`` with a layer
index, the next one read in a background thread while the current one is fitted). Per seed
and target one eigendecomposition of the centred Gram matrix ``X'WX = V diag(s) V'`` gives
the solutions for every alpha at once, ``b(alpha) = V diag(1/(s + alpha)) V' X'W y``; Val
predictions of all alphas are one matrix product. The bootstrap evaluates all resamples as
weighted moments (one matrix product per resample chunk).

``weighted_sum``: a SUPERB-style head (Yang et al., Interspeech 2021, section 3): a softmax
over learnable per-layer logits weights the (Train-standardised) layers, a linear layer per
target reads the weighted sum. For mean (and last) pooling this equals weighting the frame
sequences before pooling, since both poolings are linear in the frames; for max / std it
is a weighted sum of pooled vectors.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from data.tasks import Task, parse_tasks, resolve_task, target_array
from extract.store import FeatureStore, SetHeader
from heads import metrics
from heads.baselines import RIDGE_ALPHAS
from heads.evaluate import HEADLINE_TEXT, score_task
from heads.features import FeatureError, find_set

log = logging.getLogger(__name__)

PROBES_DIR = "probes"
CI_LEVEL = 0.95
Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``, called after each fitted (layer, pooling)."""


# --------------------------------------------------------------------------------------------
# configuration and data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightedSumConfig:
    """Training of the weighted-sum head (Adam, early stopping on the Val headline).

    Attributes:
        epochs: most epochs.
        lr: Adam learning rate of the linear heads.
        layer_lr: Adam learning rate of the layer logits (higher: few steps move them).
        weight_decay: L2 on the linear heads (not on the layer logits).
        batch_size: clips per step.
        patience: epochs without a better Val score before stopping.
    """

    epochs: int = 40
    lr: float = 5e-3
    layer_lr: float = 5e-2
    weight_decay: float = 1e-4
    batch_size: int = 64
    patience: int = 5


@dataclass(frozen=True)
class ProbeConfig:
    """Everything that defines a probe study (saved in probe.json).

    Attributes:
        workdir: the workdir (store + corpus reference).
        features: spec, name or key of an SSL feature set.
        task: one task (``avb-high``, ``avb-type``, ``exvo``, ``regress:COL``...).
        head: ``ridge`` (fast path) or any head ``train`` knows.
        poolings: poolings to probe (fields ``pooled_<pooling>``; empty = every stored one).
        layers: layers to probe (None = every stored layer).
        seeds: number of seeds 0..seeds-1 (see the module docstring for what a seed changes).
        n_boot: bootstrap resamples of Val clips for the CI.
        boot_seed: seed of the Val resamples (shared by every layer and pooling).
        alphas: ridge alphas (default: the ``ridge`` head's grid).
        weighted_sum: also train the weighted-sum head on all layers, per pooling.
        weighted: its training settings.
        name: folder name under probes/ (default: settings + time).
        n_jobs: CPU threads for BLAS / torch / heads (1 is fastest on a busy machine).
    """

    workdir: str
    features: str
    task: str
    head: str = "ridge"
    poolings: tuple[str, ...] = ()
    layers: tuple[int, ...] | None = None
    seeds: int = 1
    n_boot: int = 1000
    boot_seed: int = 0
    alphas: tuple[float, ...] = RIDGE_ALPHAS
    weighted_sum: bool = False
    weighted: WeightedSumConfig = field(default_factory=WeightedSumConfig)
    name: str | None = None
    n_jobs: int = 1


@dataclass
class ProbeData:
    """Clips with features and a split, and the labels of the task's targets.

    Attributes:
        ids: clip ids (rows).
        split: (n,) ``Train`` / ``Val`` / ``Test``.
        task: the resolved task.
        truths: target name -> labels, regression (n, k) float with NaN for missing,
            classification (n,) int codes with -1 for missing.
        excluded_missing_features: clips with a split but no stored row (failed / not
            extracted), left out.
    """

    ids: list[str]
    split: np.ndarray
    task: Task
    truths: dict[str, np.ndarray]
    excluded_missing_features: int = 0

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


@dataclass
class ProbeResult:
    """A finished study: its folder and the content of probe.json."""

    probe_dir: Path
    summary: dict[str, Any]


def load_probe_data(store: FeatureStore, header: SetHeader, corpus: Any, task: Task
                    ) -> ProbeData:
    """Clips of ``corpus`` with a split and a stored row in the set, and their labels.

    Raises:
        ValueError: no Train or no Val clip has a stored row.
    """
    clips = corpus.clips[corpus.clips["split"].isin(["Train", "Val", "Test"])]
    done, _ = store.status(header.key)
    ids = [c for c in clips.index if c in done]
    missing = len(clips) - len(ids)
    if missing:
        log.warning("%d clip(s) have no stored row in %s (failed or not extracted); left out",
                    missing, header.key)
    split = clips.loc[ids, "split"].to_numpy() if ids else np.array([], dtype=object)
    for s in ("Train", "Val"):
        if not (split == s).any():
            raise ValueError(f"no {s} clip has features in {header.key}; a probe fits on Train "
                             f"and selects on Val")
    truths = {tg.name: target_array(tg, corpus.labels, ids) for tg in task.targets}
    return ProbeData(ids, split, task, truths, missing)


def layer_fields(header: SetHeader, poolings: Sequence[str] = ()
                 ) -> tuple[list[int], dict[str, str]]:
    """The stored layers and the field of each pooling (default: every stored pooling).

    Raises:
        FeatureError: a pooling is not stored, the set has no layered fields, or poolings
            were stored with different layers.
    """
    stored = sorted(k[len("pooled_"):] for k, f in header.fields.items()
                    if k.startswith("pooled_") and "layers" in f.attrs)
    poolings = list(poolings) or stored
    if not stored:
        raise FeatureError(f"set {header.key} ({header.spec}) has no pooled SSL layers (fields: "
                           f"{sorted(header.fields)}); probing needs an ssl: feature set")
    out, layers = {}, None
    for p in poolings:
        name = f"pooled_{p}"
        if p not in stored:
            raise FeatureError(f"pooling {p!r} is not stored in {header.key}; stored poolings: "
                               f"{stored}. Poolings are chosen at extraction (--poolings).")
        these = list(header.fields[name].attrs["layers"])
        if layers is not None and these != layers:
            raise FeatureError(f"poolings of {header.key} hold different layers ({layers} vs "
                               f"{these}); probe them separately")
        layers, out[p] = these, name
    assert layers is not None
    return layers, out


# --------------------------------------------------------------------------------------------
# ridge for every alpha from one eigendecomposition
# --------------------------------------------------------------------------------------------


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


def _valid(kind: str, y: np.ndarray) -> np.ndarray:
    """Rows with a label (the rule of ``heads.experiment``: every column for regression)."""
    return (y >= 0) if kind == "classification" else np.isfinite(y).all(axis=1)


def _ccc_alphas(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Population CCC per (alpha, column): t (m, k), p (m, A, k) -> (A, k); as metrics.ccc."""
    mt, mp = t.mean(axis=0), p.mean(axis=0)  # (k,), (A, k)
    a, b = t - mt, p - mp
    m = t.shape[0]
    vt, vp = (a * a).sum(axis=0) / m, (b * b).sum(axis=0) / m
    cov = np.einsum("mk,mak->ak", a, b) / m
    den = vt + vp + (mt - mp) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 2 * cov / np.where(den > 0, den, 1.0), np.nan)


def _best_index(scores: np.ndarray, greater: bool) -> int:
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
        ok_tr, ok_va = tr[_valid(tg.kind, y[tr])], va[_valid(tg.kind, y[va])]
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
        scores = np.array([metrics.uar(y_va, classes[idx[:, a]]) for a in range(n_alpha)])
        return _best_index(scores, True)
    if tg.metric == "mae":
        return _best_index(np.abs(dec - y_va[:, None, :]).mean(axis=(0, 2)), False)
    return _best_index(_ccc_alphas(y_va.astype(np.float64), dec).mean(axis=1), True)


def train_counts(n: int, train_rows: np.ndarray, seed: int) -> np.ndarray:
    """(n,) fit counts: all Train rows once for seed 0, a bootstrap resample of Train else."""
    counts = np.zeros(n)
    if seed == 0:
        counts[train_rows] = 1.0
    else:
        draw = np.random.default_rng(seed).integers(0, len(train_rows), len(train_rows))
        counts[train_rows] = np.bincount(draw, minlength=len(train_rows))
    return counts


def standardise(X: np.ndarray, train_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """Standardise float32 features on Train rows (population std, 1 where constant).

    Returns:
        (standardised X float32 with non-finite entries set to 0, bad rows mask (n,)).
    """
    out = np.array(X, dtype=np.float32)  # a copy, standardised in place
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        out[~np.isfinite(out)] = 0.0
    Xt = out[train_rows[~bad[train_rows]]]
    mean = Xt.mean(axis=0, dtype=np.float64)
    std = Xt.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    out -= mean.astype(np.float32)
    out /= std.astype(np.float32)
    out[bad] = 0.0
    return out, bad


# --------------------------------------------------------------------------------------------
# bootstrap over Val clips, all resamples at once
# --------------------------------------------------------------------------------------------


class ValResamples:
    """The bootstrap resamples of Val clips as count matrices, identical on every call.

    Args:
        n: number of Val clips.
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
        """Count matrices (b, n): how often each Val clip is drawn in each resample."""
        if self._cache is not None:
            yield from self._cache
            return
        if self.chunk >= self.n_boot:
            self._cache = list(self._make())
            yield from self._cache
            return
        yield from self._make()


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    ok = np.isfinite(a)
    cnt = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.where(ok, a, 0.0).sum(axis=1) / np.maximum(cnt, 1), np.nan)


def _ccc_w(W: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:  # noqa: N803
    """Per-column population CCC of each resample (b, k); rows with NaN truth left out."""
    mask = np.isfinite(t)
    m = mask.astype(np.float64)
    shift = np.where(mask, t, 0.0).sum(axis=0) / np.maximum(m.sum(axis=0), 1)  # precision
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
        # a constant resample column has zero variance up to round-off (metrics._moments)
        vt = np.where(vt <= 1e-12 * (stt / cnt + np.finfo(float).tiny), 0.0, vt)
        vp = np.where(vp <= 1e-12 * (spp / cnt + np.finfo(float).tiny), 0.0, vp)
        cov = np.where((vt == 0) | (vp == 0), 0.0, cov)
        den = vt + vp + (mt - mp) ** 2
        out = np.where(den > 0, 2 * cov / np.where(den > 0, den, 1.0), np.nan)
    return np.where(cnt >= 2, out, np.nan)


def _mae_w(W: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:  # noqa: N803
    mask = np.isfinite(t)
    err = np.where(mask, np.abs(np.where(mask, t, 0.0) - p), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (W @ err.sum(axis=1)) / (W @ mask.sum(axis=1).astype(np.float64))


def _uar_w(W: np.ndarray, t: np.ndarray, p: np.ndarray, n_classes: int) -> np.ndarray:  # noqa: N803
    """UAR over the classes present in each resample's truth (as evaluate.score_target)."""
    valid = t >= 0
    onehot = np.zeros((len(t), n_classes))
    onehot[np.flatnonzero(valid), t[valid]] = 1.0
    support = W @ onehot
    hits = W @ (onehot * (valid & (t == p))[:, None])
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / np.where(present, support, 1.0), 0.0)
        return recall.sum(axis=1) / present.sum(axis=1)


def headline_resamples(task: Task, truths: dict[str, np.ndarray], preds: dict[str, np.ndarray],
                       W: np.ndarray) -> np.ndarray:  # noqa: N803
    """The task headline on each resample (b,): ``score_task`` on the resampled rows.

    Args:
        task: the task.
        truths, preds: per target, Val rows (as :func:`heads.evaluate.score_task` takes them).
        W: (b, n) draw counts of each Val row in each resample.
    """
    per_target: dict[str, tuple[str, np.ndarray]] = {}
    ccc_cols = []
    for tg in task.targets:
        t, p = truths[tg.name], preds[tg.name]
        if tg.kind == "classification":
            per_target[tg.name] = ("uar", _uar_w(W, t, p, len(tg.classes or ())))
            continue
        cols = _ccc_w(W, t.astype(np.float64), p.astype(np.float64))
        ccc_cols.append(cols)
        score = _nanmean_rows(cols) if tg.metric == "ccc" else _mae_w(W, t, p)
        per_target[tg.name] = (tg.metric, score)
    if task.headline == "ccc":
        return _nanmean_rows(np.concatenate(ccc_cols, axis=1))
    if task.headline == "exvo":
        c, u, m = (next(s for mt, s in per_target.values() if mt == k) for k in ("ccc", "uar", "mae"))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where((c > 0) & (u > 0), 3.0 / (1.0 / c + 1.0 / u + m), 0.0)
        return np.where(np.isfinite(c) & np.isfinite(u) & np.isfinite(m), out, np.nan)
    return next(s for mt, s in per_target.values() if mt == task.headline)


def summarise_seeds(data: ProbeData, seed_preds: list[dict[str, np.ndarray]],
                    resamples: ValResamples) -> dict[str, Any]:
    """Seed-mean Val score, its bootstrap CI over Val clips, std over seeds, Test score."""
    task = data.task
    va, te = data.rows("Val"), data.rows("Test")
    truth_va = {k: v[va] for k, v in data.truths.items()}
    scored = [score_task(task, truth_va, {k: v[va] for k, v in p.items()}) for p in seed_preds]
    seed_scores = [float(s["score"]) for s in scored]
    boot = np.zeros(resamples.n_boot)
    done = 0
    for W in resamples.chunks():
        vals = [headline_resamples(task, truth_va, {k: v[va] for k, v in p.items()}, W)
                for p in seed_preds]
        boot[done:done + len(W)] = np.mean(vals, axis=0)
        done += len(W)
    boot = boot[np.isfinite(boot)]
    alpha = 1 - CI_LEVEL
    ci = ([float(np.quantile(boot, alpha / 2)), float(np.quantile(boot, 1 - alpha / 2))]
          if boot.size else [float("nan"), float("nan")])
    columns = list(dict.fromkeys(c for s in scored for c in s["per_column"]))
    out: dict[str, Any] = {
        "score": float(np.mean(seed_scores)),
        "ci": ci,
        "std": float(np.std(seed_scores, ddof=1)) if len(seed_scores) > 1 else 0.0,
        "seed_scores": seed_scores,
        "per_column": {c: float(np.nanmean([s["per_column"].get(c, np.nan) for s in scored]))
                       for c in columns},
    }
    truth_te = {k: v[te] for k, v in data.truths.items()}
    if len(te) and any(_valid(tg.kind, truth_te[tg.name]).any() for tg in task.targets):
        out["test_score"] = float(np.mean([
            score_task(task, truth_te, {k: v[te] for k, v in p.items()})["score"]
            for p in seed_preds]))
    return out


# --------------------------------------------------------------------------------------------
# fitting one (layer, pooling)
# --------------------------------------------------------------------------------------------


def _fit_other_head(cfg: ProbeConfig, X: np.ndarray, data: ProbeData, seed: int,  # noqa: N803
                    tag: str, probe_dir: Path) -> dict[str, np.ndarray]:
    """Any head of ``train`` through its fit function (classical or torch)."""
    from heads.experiment import Dataset, ExperimentConfig, fit_function

    fit = fit_function(cfg.head)
    # Fit functions find their run dir through the config: keep their files in the probe dir.
    ecfg = ExperimentConfig(workdir=str(probe_dir / "fits"), task=data.task.name,
                            features=(cfg.features,), head=cfg.head, seeds=cfg.seeds,
                            run_name=tag, n_jobs=cfg.n_jobs)
    ds = Dataset(list(data.ids), data.split, X, [data.task], {data.task.name: data.truths}, [])
    if getattr(fit, "multitask", False):
        preds, _, _ = fit(ecfg, ds, [data.task], seed)
        return preds[data.task.name]
    preds, _, _ = fit(ecfg, ds, data.task, seed)
    return preds


def probe_one(cfg: ProbeConfig, Xs: np.ndarray, bad: np.ndarray, data: ProbeData,  # noqa: N803
              resamples: ValResamples, *, tag: str, probe_dir: Path) -> dict[str, Any]:
    """All seeds of one (layer, pooling): fit, predict, summarise.

    Args:
        cfg: the study.
        Xs: features of every row of ``data`` standardised on Train (:func:`standardise`).
        bad: (n,) rows whose features were not finite.
        data: rows and labels.
        resamples: the shared Val resamples.
        tag: ``L<layer>-<pooling>`` (names the fit folder of non-ridge heads).
        probe_dir: the study's folder.
    """
    tr = data.rows("Train")
    if bad.any():
        log.warning("%s: %d clip(s) with NaN/Inf features: left out of Train, predicted from "
                    "the Train mean on Val/Test", tag, int(bad.sum()))
    seed_preds, alphas = [], []
    for seed in range(cfg.seeds):
        if cfg.head == "ridge":
            counts = train_counts(len(data.ids), tr, seed)
            counts[bad] = 0.0
            # seed 0 chooses alpha on Val; bootstrap seeds refit that alpha
            preds, chosen = fit_ridge_task(Xs, data, counts, cfg.alphas,
                                           fixed=alphas[0] if alphas else None)
            alphas.append(chosen)
        else:
            preds = _fit_other_head(cfg, Xs, data, seed, tag, probe_dir)
        seed_preds.append(preds)
    out = summarise_seeds(data, seed_preds, resamples)
    if alphas:
        out["alpha"] = {t: [a[t] for a in alphas] for t in alphas[0]}
    out["nonfinite_rows"] = int(bad.sum())
    return out


def _read_layers(store: FeatureStore, key: str, ids: Sequence[str],
                 items: Sequence[tuple[str, str, int]], prepare: Callable[[np.ndarray], Any]
                 ) -> Iterator[Any]:
    """``prepare(X)`` of each (pooling, field, layer index)'s (n, d) array, in order.

    A background thread reads and prepares the next item while the caller fits the current
    one (h5py and NumPy release the GIL for the heavy parts), so two cores are busy.
    """
    def read(item: tuple[str, str, int]) -> Any:
        X, _ = store.read(key, item[1], ids, index=item[2])
        return prepare(X)

    if not items:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, items[0])
        for i in range(len(items)):
            out = pending.result()
            if i + 1 < len(items):
                pending = pool.submit(read, items[i + 1])
            yield out


# --------------------------------------------------------------------------------------------
# weighted sum of all layers (SUPERB)
# --------------------------------------------------------------------------------------------


def _weighted_sum_model(n_layers: int, dim: int, outputs: Sequence[int]) -> Any:
    import torch
    from torch import nn

    class WeightedSumProbe(nn.Module):
        """softmax(logits)-weighted sum of layers -> one linear layer per target."""

        def __init__(self) -> None:
            super().__init__()
            self.layer_logits = nn.Parameter(torch.zeros(n_layers))  # uniform at start
            self.heads = nn.ModuleList(nn.Linear(dim, k) for k in outputs)

        def layer_weights(self) -> torch.Tensor:
            return torch.softmax(self.layer_logits, dim=0)  # (L,), sums to one

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # x: (batch, L, dim)
            h = torch.einsum("l,bld->bd", self.layer_weights(), x)  # (batch, dim)
            return [head(h) for head in self.heads]

    return WeightedSumProbe()


def standardise_layers(X: np.ndarray, train_rows: np.ndarray, *, block: int = 2048
                       ) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """Standardise (n, L, d) features per layer and dimension on Train, as float16 in place.

    Returns:
        (float16 array, bad rows mask): non-finite entries become 0, their rows are flagged.
    """
    n = X.shape[0]
    bad = np.zeros(n, dtype=bool)
    is_train = np.zeros(n, dtype=bool)
    is_train[train_rows] = True
    s1 = np.zeros(X.shape[1:])
    s2 = np.zeros(X.shape[1:])
    cnt = 0
    for lo in range(0, n, block):
        blk = X[lo:lo + block].astype(np.float64)
        fin = np.isfinite(blk).reshape(len(blk), -1).all(axis=1)
        bad[lo:lo + block] = ~fin
        sel = np.flatnonzero(is_train[lo:lo + block] & fin)
        s1 += blk[sel].sum(axis=0)
        s2 += (blk[sel] ** 2).sum(axis=0)
        cnt += len(sel)
    mean = s1 / max(cnt, 1)
    std = np.sqrt(np.maximum(s2 / max(cnt, 1) - mean ** 2, 0.0))
    std[std == 0] = 1.0
    out = X if X.dtype == np.float16 else np.empty(X.shape, dtype=np.float16)
    for lo in range(0, n, block):
        blk = (X[lo:lo + block].astype(np.float64) - mean) / std
        out[lo:lo + block] = np.where(np.isfinite(blk), blk, 0.0).astype(np.float16)
    return out, bad


def fit_weighted_sum(X16: np.ndarray, data: ProbeData, seed: int, wcfg: WeightedSumConfig,  # noqa: N803
                     *, exclude: np.ndarray | None = None, n_jobs: int = 1) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, list]]:
    """Train the weighted-sum head for one seed (init and batch order come from the seed).

    Losses: MSE on Train-standardised regression targets (NaN entries masked), class-weighted
    cross-entropy (normalised inverse Train frequency) for classification; summed over
    targets. Early stopping on the Val headline; the best epoch's weights are kept.

    Args:
        X16: standardised features (n, L, d), float16.
        data: rows and labels.
        seed: torch seed.
        wcfg: training settings.
        exclude: (n,) rows left out of Train (non-finite features).
        n_jobs: torch threads.

    Returns:
        (predictions per target for every row, layer weights (L,) summing to one,
        curve: epoch, train_loss, val_score lists).
    """
    import torch

    task = data.task
    greater = task.headline != "mae"
    tr = data.rows("Train")
    if exclude is not None:
        tr = tr[~exclude[tr]]
    va = data.rows("Val")
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, n_jobs))
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        outputs, ys, scales = [], [], []
        for tg in task.targets:
            y = data.truths[tg.name]
            if tg.kind == "classification":
                c = len(tg.classes or ())
                freq = np.bincount(y[tr][y[tr] >= 0], minlength=c).astype(np.float64)
                inv = np.where(freq > 0, 1.0 / np.maximum(freq, 1), 0.0)
                weights = torch.tensor(inv / inv.sum() * (freq > 0).sum(), dtype=torch.float32)
                outputs.append(c)
                ys.append(torch.from_numpy(y.astype(np.int64)))
                scales.append(weights)
            else:
                mu = np.nanmean(y[tr], axis=0)
                sd = np.nanstd(y[tr], axis=0)
                sd = np.where(sd > 0, sd, 1.0)
                outputs.append(y.shape[1])
                ys.append(torch.from_numpy(((y - mu) / sd).astype(np.float32)))
                scales.append((mu, sd))
        model = _weighted_sum_model(X16.shape[1], X16.shape[2], outputs)
        opt = torch.optim.Adam([
            {"params": [model.layer_logits], "weight_decay": 0.0, "lr": wcfg.layer_lr},
            {"params": model.heads.parameters(), "weight_decay": wcfg.weight_decay}],
            lr=wcfg.lr)

        def batch_x(rows: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(X16[rows].astype(np.float32))

        def loss_of(outs: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
            total = torch.zeros(())
            for tg, out, y, sc in zip(task.targets, outs, ys, scales):
                yt = y[rows]
                if tg.kind == "classification":
                    if (yt >= 0).any():
                        total = total + torch.nn.functional.cross_entropy(
                            out, yt, weight=sc, ignore_index=-1)
                else:
                    ok = torch.isfinite(yt)
                    if ok.any():
                        total = total + ((out - torch.nan_to_num(yt)) ** 2)[ok].mean()
            return total

        def predict(rows: np.ndarray) -> dict[str, np.ndarray]:
            model.eval()
            parts: list[list[np.ndarray]] = [[] for _ in task.targets]
            with torch.no_grad():
                for lo in range(0, len(rows), 2048):
                    outs = model(batch_x(rows[lo:lo + 2048]))
                    for i, o in enumerate(outs):
                        parts[i].append(o.numpy())
            out = {}
            for i, tg in enumerate(task.targets):
                o = (np.concatenate(parts[i]) if parts[i]
                     else np.zeros((0, outputs[i]), dtype=np.float32))
                if tg.kind == "classification":
                    out[tg.name] = o.argmax(axis=1)
                else:
                    mu, sd = scales[i]
                    p = o.astype(np.float64) * sd + mu
                    out[tg.name] = np.clip(p, *tg.value_range) if tg.value_range else p
            return out

        def val_score() -> float:
            p = predict(va)
            return float(score_task(task, {k: v[va] for k, v in data.truths.items()}, p)["score"])

        curve: dict[str, list] = {"epoch": [], "train_loss": [], "val_score": [], "layer_weights": []}
        best_score, best_state, since = float("nan"), None, 0
        for epoch in range(wcfg.epochs):
            model.train()
            order = tr[torch.randperm(len(tr), generator=gen).numpy()]
            losses = []
            for lo in range(0, len(order), wcfg.batch_size):
                rows = order[lo:lo + wcfg.batch_size]
                loss = loss_of(model(batch_x(rows)), torch.from_numpy(rows))
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            score = val_score()
            curve["epoch"].append(epoch)
            curve["train_loss"].append(float(np.mean(losses)))
            curve["val_score"].append(score)
            curve["layer_weights"].append(model.layer_weights().detach().numpy().tolist())
            improved = best_state is None or (np.isfinite(score) and (
                np.isnan(best_score) or (score > best_score if greater else score < best_score)))
            if improved:
                best_score, best_state, since = score, copy.deepcopy(model.state_dict()), 0
            else:
                since += 1
                if since >= wcfg.patience:
                    break
        assert best_state is not None
        model.load_state_dict(best_state)
        preds = predict(np.arange(len(data.ids)))
        weights = model.layer_weights().detach().numpy().astype(np.float64)
    finally:
        torch.set_num_threads(prev_threads)
    return preds, weights, curve


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------


def default_probe_name(cfg: ProbeConfig, header: SetHeader) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    task = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.task)
    return f"{stamp}-{task}-{cfg.head}-{header.name}" + ("-wsum" if cfg.weighted_sum else "")


def _check_config(cfg: ProbeConfig) -> None:
    if cfg.seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {cfg.seeds}")
    if cfg.n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {cfg.n_boot}")
    if cfg.head != "ridge":
        from heads.experiment import fit_function

        fit_function(cfg.head)  # raises for an unknown head, naming the known ones


def run_probe(cfg: ProbeConfig, *, progress: Progress | None = None) -> ProbeResult:
    """Probe every (layer, pooling) and write the study's folder.

    Args:
        cfg: the study.
        progress: called after each fitted (layer, pooling) and weighted-sum seed.

    Returns:
        The folder and the content of probe.json.

    Raises:
        FeatureError: the set, a pooling or a layer is not stored (names what is).
        TaskError: the corpus lacks the task's columns.
        ValueError: bad settings, several tasks, no Train/Val labels, unknown head.
    """
    from data.workdir import open_corpus
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    _check_config(cfg)
    store = FeatureStore(cfg.workdir)
    header = find_set(store, cfg.features)
    stored_layers, fields = layer_fields(header, cfg.poolings)
    poolings = list(fields)
    layers = list(stored_layers) if cfg.layers is None else list(cfg.layers)
    missing = [l for l in layers if l not in stored_layers]
    if missing:
        raise FeatureError(f"layer(s) {missing} are not stored in {header.key}; stored layers: "
                           f"{stored_layers}. Extract them with --layers.")
    tasks = parse_tasks(cfg.task)
    if len(tasks) != 1:
        raise ValueError(f"a probe studies one task, got {[t.name for t in tasks]}; run one "
                         f"probe per task")
    corpus = open_corpus(cfg.workdir)
    task = resolve_task(tasks[0], corpus.labels)
    data = load_probe_data(store, header, corpus, task)
    name = cfg.name or default_probe_name(cfg, header)
    probe_dir = Path(cfg.workdir) / PROBES_DIR / name
    probe_dir.mkdir(parents=True, exist_ok=True)
    resamples = ValResamples(len(data.rows("Val")), cfg.n_boot, cfg.boot_seed)
    items = [(p, fields[p], stored_layers.index(l)) for p in poolings for l in layers]
    total = len(items) + (cfg.seeds * len(poolings) if cfg.weighted_sum else 0)
    log.info("probing %s: %d layer(s) x %d pooling(s), %d seed(s), head %s, task %s; %d clips "
             "(%d Train, %d Val, %d Test)", header.key, len(layers), len(poolings), cfg.seeds,
             cfg.head, task.name, len(data.ids), len(data.rows("Train")), len(data.rows("Val")),
             len(data.rows("Test")))
    results: list[dict[str, Any]] = []
    weighted: dict[str, Any] = {}
    with threadpool_limits(limits=max(1, cfg.n_jobs)):
        train_rows = data.rows("Train")
        prepared = _read_layers(store, header.key, data.ids, items,
                                lambda X: standardise(X, train_rows))
        for i, (Xs, bad) in enumerate(prepared):
            pooling, _, pos = items[i]
            layer = stored_layers[pos]
            tag = f"L{layer}-{pooling}"
            rec = {"layer": layer, "pooling": pooling,
                   **probe_one(cfg, Xs, bad, data, resamples, tag=tag, probe_dir=probe_dir)}
            results.append(rec)
            log.debug("%s: Val %s = %.4f [%.4f, %.4f] (std %.4f)", tag, task.headline,
                     rec["score"], rec["ci"][0], rec["ci"][1], rec["std"])
            if progress:
                progress(len(results), total, tag)
        if cfg.weighted_sum:
            done = len(results)
            for pooling in poolings:
                weighted[pooling] = _weighted_study(store, header, fields[pooling], stored_layers,
                                                    layers, data, cfg, resamples)
                done += cfg.seeds
                if progress:
                    progress(done, total, f"weighted sum {pooling}")

    greater = task.headline != "mae"
    best = _best_record(results, greater)
    summary = {
        "name": name, "kind": "probe",
        "config": _jsonable(asdict(cfg)),
        "feature_set": {"key": header.key, "spec": header.spec, "name": header.name,
                        "model": header.config.get("model"), "fields": fields},
        "task": task.name, "metric": task.headline, "metric_text": HEADLINE_TEXT[task.headline],
        "greater_is_better": greater,
        "ci_method": f"{int(CI_LEVEL * 100)} % percentile bootstrap over Val clips of the "
                     f"seed-mean score ({cfg.n_boot} resamples, the same for every layer and "
                     f"pooling)",
        "seed_meaning": ("seed 0 fits on all of Train and chooses alpha on Val; seed k > 0 refits "
                         "that alpha on a bootstrap resample of Train (numpy default_rng(k))"
                         if cfg.head == "ridge" else "seeds change initialisation / randomness of "
                         "the head"),
        "std_meaning": "standard deviation of the Val score over seeds (ddof=1)",
        "n_clips": {s: int(len(data.rows(s))) for s in ("Train", "Val", "Test")},
        "excluded_missing_features": data.excluded_missing_features,
        "layers": layers, "poolings": poolings,
        "results": results, "best": best,
        "weighted_sum": weighted,
        "seconds": round(time.perf_counter() - t0, 3),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    write_probe(summary, probe_dir)
    log.info("best layer: %s (%s) with Val %s = %.4f; written to %s", best["layer"],
             best["pooling"], task.headline, best["score"], probe_dir)
    return ProbeResult(probe_dir, summary)


def _weighted_study(store: FeatureStore, header: SetHeader, field_name: str,
                    stored_layers: list[int], layers: list[int], data: ProbeData,
                    cfg: ProbeConfig, resamples: ValResamples) -> dict[str, Any]:
    """All seeds of the weighted-sum head on one pooling's chosen layers."""
    X, _ = store.read(header.key, field_name, data.ids)  # (n, L_stored, d)
    if layers != stored_layers:
        X = X[:, [stored_layers.index(l) for l in layers]]
    X16, bad = standardise_layers(X, data.rows("Train"))
    del X
    seed_preds, weights, curves = [], [], []
    for seed in range(cfg.seeds):
        preds, w, curve = fit_weighted_sum(X16, data, seed, cfg.weighted, exclude=bad,
                                            n_jobs=cfg.n_jobs)
        seed_preds.append(preds)
        weights.append(w)
        curves.append(curve)
    out = summarise_seeds(data, seed_preds, resamples)
    wm = np.mean(weights, axis=0)
    out.update({
        "layers": layers,
        "weights": wm.tolist(),
        "weights_std": (np.std(weights, axis=0, ddof=1).tolist() if len(weights) > 1
                        else [0.0] * len(layers)),
        "weights_per_seed": [w.tolist() for w in weights],
        "epochs": [len(c["epoch"]) for c in curves],
        "curves": curves,
        "nonfinite_rows": int(bad.sum()),
    })
    return out


def _best_record(results: list[dict[str, Any]], greater: bool) -> dict[str, Any]:
    scores = np.array([r["score"] for r in results], dtype=np.float64)
    r = results[_best_index(scores, greater)]
    return {"layer": r["layer"], "pooling": r["pooling"], "score": r["score"], "ci": r["ci"],
            "std": r["std"]}


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def probe_table(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per layer; per pooling ``<pooling>_score``, ``_ci_low``, ``_ci_high``, ``_std``."""
    rows: dict[int, dict[str, Any]] = {}
    for r in summary["results"]:
        row = rows.setdefault(r["layer"], {"layer": r["layer"]})
        p = r["pooling"]
        row[f"{p}_score"] = r["score"]
        row[f"{p}_ci_low"], row[f"{p}_ci_high"] = r["ci"]
        row[f"{p}_std"] = r["std"]
    return pd.DataFrame([rows[k] for k in sorted(rows)])


def write_probe(summary: dict[str, Any], probe_dir: Path) -> dict[str, Path]:
    """probe.json, probe.csv and (weighted sum) layer_weights.csv; atomic renames."""
    paths = {"json": probe_dir / "probe.json", "csv": probe_dir / "probe.csv"}
    write_text_atomic(paths["json"], json.dumps(_jsonable(summary), indent=2, allow_nan=True))
    write_text_atomic(paths["csv"], probe_table(summary).to_csv(index=False, float_format="%.6f"))
    if summary.get("weighted_sum"):
        rows = [{"pooling": p, "layer": l, "weight": w, "weight_std": s}
                for p, ws in summary["weighted_sum"].items()
                for l, w, s in zip(ws["layers"], ws["weights"], ws["weights_std"])]
        paths["weights"] = probe_dir / "layer_weights.csv"
        write_text_atomic(paths["weights"], pd.DataFrame(rows).to_csv(index=False, float_format="%.6f"))
    return paths


def write_text_atomic(path: Path, text: str) -> None:
    """Write under a temporary name, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_probes(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every readable WORKDIR/probes/*/probe.json, oldest name first (with ``dir`` added)."""
    base = Path(workdir) / PROBES_DIR
    out = []
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        p = d / "probe.json"
        if p.is_file():
            try:
                out.append({**json.loads(p.read_text(encoding="utf-8")), "dir": str(d)})
            except ValueError as exc:
                log.warning("skipping probe %s: unreadable (%s)", d, exc)
    return out
