"""Task scores from predictions: per column, per target, the headline, and a bootstrap CI.

Predictions and truths are dicts keyed by target name: regression ``(n, k)`` float arrays with
NaN for a missing label, classification ``(n,)`` integer codes with -1 for a missing label.
Missing labels are left out per column, never filled.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from data.tasks import Task
from heads import metrics

HEADLINE_TEXT = {
    "ccc": "mean CCC (population form, = audmetric.concordance_cc)",
    "uar": "UAR (macro-averaged recall)",
    "mae": "MAE",
    "exvo": "ExVo harmonic mean of (emotion CCC, country UAR, 1/age MAE)",
}


def score_target(target: Any, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Score one target, leaving out rows whose label is missing."""
    if target.kind == "classification":
        keep = y_true >= 0
        labels = list(range(len(target.classes)))
        present = sorted(set(y_true[keep].tolist()))
        out = {"metric": "uar", "n": int(keep.sum()),
               "score": float(metrics.uar(y_true[keep], y_pred[keep], labels=present)) if keep.any() else float("nan")}
        out["confusion"] = metrics.confusion(y_true[keep], y_pred[keep], labels).tolist()
        out["classes"] = list(target.classes)
        return out
    per_col, per_col_org = {}, {}
    errs = []
    for j, col in enumerate(target.columns):
        keep = np.isfinite(y_true[:, j])
        if keep.sum() < 2:
            per_col[col] = float("nan")
            continue
        per_col[col] = float(metrics.ccc(y_true[keep, j], y_pred[keep, j]))
        per_col_org[col] = float(metrics.ccc_organisers(y_true[keep, j], y_pred[keep, j]))
        errs.append(np.abs(y_true[keep, j] - y_pred[keep, j]))
    mae = float(np.mean(np.concatenate(errs))) if errs else float("nan")
    vals = [v for v in per_col.values() if np.isfinite(v)]
    out = {"metric": target.metric, "n": int(np.isfinite(y_true).any(axis=1).sum()),
           "per_column": per_col, "per_column_organisers": per_col_org,
           "mean_ccc": float(np.mean(vals)) if vals else float("nan"),
           "mean_ccc_organisers": float(np.mean(list(per_col_org.values()))) if per_col_org else float("nan"),
           "mae": mae}
    out["score"] = out["mean_ccc"] if target.metric == "ccc" else mae
    return out


def score_task(task: Task, truths: dict[str, np.ndarray], preds: dict[str, np.ndarray]
               ) -> dict[str, Any]:
    """Every target's scores and the task's headline ``score`` with its ``metric`` name."""
    targets = {t.name: score_target(t, truths[t.name], preds[t.name]) for t in task.targets}
    if task.headline == "exvo":
        emo = next(v for t, v in zip(task.targets, targets.values()) if t.metric == "ccc")
        cty = next(v for t, v in zip(task.targets, targets.values()) if t.metric == "uar")
        age = next(v for t, v in zip(task.targets, targets.values()) if t.metric == "mae")
        parts = (emo["score"], cty["score"], age["score"])
        score = float(metrics.exvo_score(*parts)) if all(np.isfinite(parts)) else float("nan")
    elif task.headline == "ccc":
        cols = [c for t in targets.values() for c in t.get("per_column", {}).values() if np.isfinite(c)]
        score = float(np.mean(cols)) if cols else float("nan")
    else:
        score = next(v["score"] for v in targets.values() if v["metric"] == task.headline)
    per_column = {c: v for t in targets.values() for c, v in t.get("per_column", {}).items()}
    return {"score": score, "metric": task.headline, "metric_text": HEADLINE_TEXT[task.headline],
            "targets": targets, "per_column": per_column}


def bootstrap_task(task: Task, truths: dict[str, np.ndarray], preds: dict[str, np.ndarray], *,
                   n_boot: int = 500, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap CI of the task headline, resampling clips (rows) jointly."""
    n = len(next(iter(truths.values())))
    if n < 3 or n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        s = score_task(task, {k: v[idx] for k, v in truths.items()},
                       {k: v[idx] for k, v in preds.items()})["score"]
        if np.isfinite(s):
            scores.append(s)
    if not scores:
        return float("nan"), float("nan")
    return float(np.quantile(scores, alpha / 2)), float(np.quantile(scores, 1 - alpha / 2))
