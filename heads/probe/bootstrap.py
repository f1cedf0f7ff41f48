"""Paired bootstrap over Val clips: every resample at once, as weighted moments.

The same resamples (count matrices) serve every layer and pooling of a study, so differences
between layers are not blurred by different draws.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from data.tasks import Task
from heads.evaluate import score_task
from heads.probe.data import ProbeData, labelled

CI_LEVEL = 0.95
"""Level of the percentile bootstrap intervals."""


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
    if len(te) and any(labelled(tg.kind, truth_te[tg.name]).any() for tg in task.targets):
        out["test_score"] = float(np.mean([
            score_task(task, truth_te, {k: v[te] for k, v in p.items()})["score"]
            for p in seed_preds]))
    return out
