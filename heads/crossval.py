"""Cross-validation: one run per fold of a protocol (:mod:`data.folds`), then the scores over
folds.

Each fold is an ordinary run (:func:`heads.experiment.run_experiment` on the corpus with the
fold's Train / Val / Test), written to ``WORKDIR/runs/<name>/<fold>/``; the study's summary is
``WORKDIR/runs/<name>/cv.json`` and ``cv.csv``. Two aggregates are reported, each labelled:

* ``mean`` and ``std`` over folds (ddof=1) of every fold's score: the usual IEMOCAP table entry;
* ``pooled``: the scores of every fold's Test predictions taken together (each clip is tested in
  exactly one fold of a leave-one-group-out protocol). For classification they come from the
  summed confusion matrices: WA is paper 004's ``wa = (1 / N_total) sum_k N_k^correct``, UA the
  mean recall over the classes found in the pooled truth or prediction (the project's UAR rule),
  macro-F1 the mean F1 over the same classes.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from data.folds import Fold, make_folds
from data.workdir import open_corpus
from heads import aux_metrics, rundir
from heads.config import ExperimentConfig
from heads.experiment import ExperimentResult, default_run_name, run_experiment

log = logging.getLogger(__name__)

CV_FILE = "cv.json"
SPLITS = ("val", "test")


@dataclass
class CrossValidationResult:
    """The study's folder, each fold's run, and the summary written to ``cv.json``."""

    folder: Path
    folds: list[tuple[Fold, ExperimentResult]]
    summary: dict[str, Any]


def pooled_classification(confusions: Sequence[Sequence[Sequence[int]]]) -> dict[str, float]:
    """WA, UA and macro-F1 of summed confusion matrices (rows true, columns predicted).

    Example:
        >>> pooled_classification([[[2, 0], [1, 1]], [[1, 1], [0, 2]]])["wa"]
        0.75
    """
    c = np.sum(np.asarray(confusions, dtype=np.float64), axis=0)
    total = c.sum()
    if total == 0:
        return {"wa": float("nan"), "uar": float("nan"), "macro_f1": float("nan"), "n": 0}
    truth, pred, hit = c.sum(axis=1), c.sum(axis=0), np.diag(c)
    seen = (truth > 0) | (pred > 0)
    recall = np.where(truth > 0, hit / np.maximum(truth, 1), 0.0)
    precision = np.where(pred > 0, hit / np.maximum(pred, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"wa": float(hit.sum() / total), "uar": float(recall[seen].mean()),
            "macro_f1": float(f1[seen].mean()), "n": int(total)}


def fold_stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean and std (ddof=1) over folds of the finite values, and every fold's value."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if ok.size else float("nan"),
            "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
            "folds": [float(x) for x in v]}


def summarise(folds: Sequence[Fold], results: Sequence[ExperimentResult]) -> dict[str, Any]:
    """Scores over folds per split and task: the headline, per-column scores, and for each
    classification target WA / UA / macro-F1 (mean and std over folds, and pooled)."""
    out: dict[str, Any] = {"folds": [], "tasks": {}}
    for fold, res in zip(folds, results):
        out["folds"].append({"name": fold.name, "run": str(res.run_dir), "counts": fold.counts(),
                             "test_groups": list(fold.test_groups),
                             "val_groups": list(fold.val_groups), "val_rule": fold.val_rule})
    task_names = list(results[0].metrics["tasks"]) if results else []
    for task in task_names:
        entry: dict[str, Any] = {}
        for split in SPLITS:
            per_fold = [r.metrics["tasks"][task].get(split) for r in results]
            if any(p is None for p in per_fold):
                continue  # a fold without labels on this split: no aggregate over folds
            first = per_fold[0]
            block: dict[str, Any] = {"metric": first.get("metric"),
                                     "score": fold_stats([p["score"] for p in per_fold])}
            columns = list(first.get("per_column", {}))
            block["per_column"] = {c: fold_stats([p["per_column"].get(c) for p in per_fold])
                                   for c in columns}
            targets: dict[str, Any] = {}
            for tg, info in first.get("targets", {}).items():
                if "confusion" not in info:
                    continue
                fold_infos = [p["targets"][tg] for p in per_fold]
                targets[tg] = {k: fold_stats([f[k] for f in fold_infos]) for k in ("wa", "uar", "macro_f1")}
                targets[tg]["pooled"] = pooled_classification([f["confusion"] for f in fold_infos])
                targets[tg]["classes"] = info.get("classes")
            if targets:
                block["targets"] = targets
            entry[split] = block
        out["tasks"][task] = entry
    return out


def summary_csv(summary: dict[str, Any]) -> str:
    """cv.csv: one line per task, split and quantity: mean, std, then each fold's value."""
    lines = ["task,split,quantity,mean,std," + ",".join(f["name"] for f in summary["folds"])]
    for task, entry in summary["tasks"].items():
        for split, block in entry.items():
            rows = [(block["metric"] or "score", block["score"])]
            rows += [(f"{tg}.{k}", v[k]) for tg, v in block.get("targets", {}).items()
                     for k in ("wa", "uar", "macro_f1")]
            rows += [(c, s) for c, s in block["per_column"].items()]
            for name, s in rows:
                lines.append(",".join([task, split, name, f"{s['mean']:.6f}", f"{s['std']:.6f}"]
                                      + [f"{x:.6f}" for x in s["folds"]]))
    return "\n".join(lines) + "\n"


def aux_csv(aux: dict[str, Any]) -> str:
    """cv.csv's lines of the auxiliary heads: head, split, quantity, mean, std, each fold."""
    return "".join(",".join([head, split, q, f"{s['mean']:.6f}", f"{s['std']:.6f}"]
                            + [f"{x:.6f}" for x in s["folds"]]) + "\n"
                   for head, split, q, s in aux_metrics.quantities(aux))


def aux_over_folds(metrics: Sequence[dict[str, Any]], names: Sequence[str] | None = None
                   ) -> dict[str, Any]:
    """cv.json's ``aux``: the auxiliary heads of every fold's metrics.json (one layout,
    :mod:`heads.aux_metrics`, for ``train --cv`` and ``finetune --cv``) over folds, ``{head:
    {"measures", split: {quantity: mean/std/folds}}}``, for the heads, splits and quantities
    every fold scored.

    Args:
        metrics: each fold's metrics.json.
        names: the folds' names, for the warning about a fold in an older layout.
    """
    names = list(names) if names is not None else [str(i) for i in range(len(metrics))]
    old = [n for n, m in zip(names, metrics) if aux_metrics.older_layout(m)]
    if old:
        log.warning("fold(s) %s: %s; no auxiliary head is summarised over folds",
                    ", ".join(old), aux_metrics.OLDER_TEXT)
    runs = [aux_metrics.run_aux(m) for m in metrics]
    out: dict[str, Any] = {}
    if not runs:
        return out
    for head, quantities in aux_metrics.HEADS.items():
        entries = [r.get(head) for r in runs]
        if any(e is None for e in entries):
            continue
        for split in aux_metrics.SPLITS:
            blocks = [e.get(split) for e in entries]
            if any(b is None for b in blocks):
                continue
            stats = {q: fold_stats([b.get(q) for b in blocks]) for q in quantities
                     if all(b.get(q) is not None for b in blocks)}
            if stats:
                out.setdefault(head, {"measures": entries[0]["measures"]})[split] = stats
    return out


def run_cross_validation(cfg: ExperimentConfig, protocol: str, *, val: str = "partner",
                         recipe: dict[str, Any] | None = None,
                         on_fold: Callable[[int, int, Fold], None] | None = None
                         ) -> CrossValidationResult:
    """One run per fold of ``protocol`` (``leave-one-out:session``, ``test-group:01F``,
    ``emobox:FOLDER``; :func:`data.folds.make_folds`), then the summary.

    Args:
        cfg: the run's settings; ``run_name`` names the study's folder (default: settings,
            time and ``-cv``).
        protocol: the fold protocol.
        val: the Val rule of :class:`data.folds.ValRule` (``partner``, ``next-session``,
            ``next-group``, ``none``).
        recipe: recorded in every fold's run (see :func:`run_experiment`).
        on_fold: called before each fold with (index, count, fold).

    Raises:
        data.folds.FoldError: the protocol does not apply to this corpus.
        Everything :func:`run_experiment` raises, for the first fold that fails.
    """
    corpus = open_corpus(cfg.workdir)
    folds = make_folds(corpus, protocol, val=val)
    name = cfg.run_name or f"{default_run_name(cfg)}-cv"
    folder = rundir.make_run_dir(rundir.run_dir(cfg.workdir, name), result=CV_FILE)
    results = []
    for i, fold in enumerate(folds):
        if on_fold is not None:
            on_fold(i, len(folds), fold)
        log.info("fold %d/%d %s: %s", i + 1, len(folds), fold.name, fold.counts())
        fold_cfg = replace(cfg, run_name=f"{name}/{rundir.safe_name(fold.name)}")
        results.append(run_experiment(fold_cfg, recipe=recipe, corpus=fold.apply(corpus)))
    summary = {"protocol": protocol, "val_rule": val, "run": name, "task": cfg.task,
               "head": cfg.head, "features": list(cfg.features),
               "aggregates": {"mean": "mean over folds of each fold's score",
                              "std": "standard deviation over folds (ddof=1)",
                              "pooled": "every fold's predictions together (summed confusions)"},
               **summarise(folds, results)}
    aux = aux_over_folds([r.metrics for r in results], [f.name for f in folds])
    if aux:
        summary["aux"] = aux
    rundir.write_text(folder / "cv.csv", summary_csv(summary) + aux_csv(aux))
    rundir.write_json(folder / CV_FILE, rundir.jsonable(summary))
    return CrossValidationResult(folder, list(zip(folds, results)), summary)


__all__ = ["CrossValidationResult", "aux_csv", "aux_over_folds", "fold_stats",
           "pooled_classification", "run_cross_validation", "summarise", "summary_csv"]
