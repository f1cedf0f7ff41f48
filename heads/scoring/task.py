"""Task scores from predictions: per column, per target, the headline (and the ExVo score).

Predictions and truths are dicts keyed by target name: regression ``(n, k)`` float arrays with
NaN for a missing label, classification ``(n,)`` integer codes with -1 for a missing label.
Missing labels are left out per column, never filled.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from data.tasks import Task
from heads.scoring.classification import (confusion, macro_f1_score, per_class_recall, uar_score,
                                          wa_score)
from heads.scoring.regression import ccc_organisers_score, ccc_score

logger = logging.getLogger(__name__)

HEADLINE_TEXT = {
    "ccc": "mean CCC (population form, = audmetric.concordance_cc)",
    "uar": "UAR (macro-averaged recall)",
    "mae": "MAE",
    "exvo": "ExVo harmonic mean of (emotion CCC, country UAR, 1/age MAE)",
}


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


def score_target(target: Any, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Score one target, leaving out rows whose label is missing.

    Classification: ``score`` = ``uar`` (:func:`uar_score`), ``wa`` (accuracy), ``macro_f1``,
    ``per_class_recall`` and ``support`` by class name (the classes found in the truth or the
    prediction: UAR is the mean of these recalls), ``confusion`` (rows true, columns
    predicted, in ``classes`` order). Regression: per-column CCC (both variants), their
    means, the MAE.
    """
    if target.kind == "classification":
        keep = y_true >= 0
        labels = list(range(len(target.classes)))
        t, p = y_true[keep], y_pred[keep]
        out = {"metric": "uar", "n": int(keep.sum()),
               "score": uar_score(t, p) if keep.any() else float("nan")}
        out["uar"] = out["score"]
        out["wa"] = wa_score(t, p) if keep.any() else float("nan")
        out["macro_f1"] = macro_f1_score(t, p) if keep.any() else float("nan")
        # the classes UAR averages over (truth or prediction), by name
        recalls = per_class_recall(t, p) if keep.any() else {}
        out["per_class_recall"] = {target.classes[int(c)]: r for c, r in recalls.items()}
        out["support"] = {target.classes[int(c)]: int((t == c).sum()) for c in recalls}
        out["confusion"] = confusion(t, p, labels).tolist()
        out["classes"] = list(target.classes)
        return out
    per_col, per_col_org = {}, {}
    errs = []
    for j, col in enumerate(target.columns):
        keep = np.isfinite(y_true[:, j])
        if keep.sum() < 2:
            per_col[col] = float("nan")
            continue
        per_col[col] = float(ccc_score(y_true[keep, j], y_pred[keep, j]))
        per_col_org[col] = float(ccc_organisers_score(y_true[keep, j], y_pred[keep, j]))
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
        score = float(exvo_score(*parts)) if all(np.isfinite(parts)) else float("nan")
    elif task.headline == "ccc":
        cols = [c for t in targets.values() for c in t.get("per_column", {}).values() if np.isfinite(c)]
        score = float(np.mean(cols)) if cols else float("nan")
    else:
        score = next(v["score"] for v in targets.values() if v["metric"] == task.headline)
    per_column = {c: v for t in targets.values() for c, v in t.get("per_column", {}).items()}
    return {"score": score, "metric": task.headline, "metric_text": HEADLINE_TEXT[task.headline],
            "targets": targets, "per_column": per_column}
