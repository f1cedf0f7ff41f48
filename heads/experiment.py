"""One experiment: cached features + a task + a head -> a run directory.

Fits on Train, selects on Val, reports Val scores with a bootstrap confidence interval and
writes Test predictions in the challenge submission format::

    WORKDIR/runs/<run-name>/config.json         resolved configuration (seed included)
    WORKDIR/runs/<run-name>/metrics.json        metrics["val"]["score"], ["metric"], per column...
    WORKDIR/runs/<run-name>/predictions_<split>_<task>.csv

The head comes from the registry (:mod:`heads.registry`); every head, classical or torch, is
fitted through the :class:`heads.base.Head` protocol.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.corpus import Corpus
from data.tasks import Task, check_varied_targets, parse_tasks, resolve_task, target_array
from data.workdir import open_corpus
from extract.store import FeatureStore
from heads import rundir
from heads.base import FitOptions
from heads.config import ExperimentConfig
from heads.dataset import labelled
from heads.evaluate import bootstrap_task, score_task
from heads.features import FeatureRequest
from heads.registry import get_head

log = logging.getLogger(__name__)


@dataclass
class ExperimentResult:
    run_dir: Path
    metrics: dict[str, Any]


def default_run_name(cfg: ExperimentConfig) -> str:
    """The run name made from the settings and the time (:func:`heads.rundir.default_run_name`)."""
    return rundir.default_run_name(cfg.task, cfg.head, cfg.features, cfg.layer)


def run_dir_of(cfg: ExperimentConfig) -> Path:
    """WORKDIR/runs/<run_name> of a config (its run name, else the default one)."""
    return rundir.run_dir(cfg.workdir, cfg.run_name or default_run_name(cfg))


def _id_for_submission(corpus: Corpus, cid: str) -> str:
    return f"[{cid}]" if corpus.layout in ("avb", "exvo") else cid


def _write_predictions(path: Path, corpus: Corpus, task: Task, ids: Sequence[str],
                       preds: dict[str, np.ndarray]) -> None:
    cols: dict[str, Any] = {"File_ID": [_id_for_submission(corpus, c) for c in ids]}
    for tg in task.targets:
        p = preds[tg.name]
        if tg.kind == "classification":
            cols[tg.columns[0]] = [tg.classes[i] for i in np.asarray(p).astype(int)]
        else:
            for j, c in enumerate(tg.columns):
                cols[c] = np.round(np.asarray(p)[:, j].astype(float), 6)
    pd.DataFrame(cols).to_csv(path, index=False)


def run_experiment(cfg: ExperimentConfig) -> ExperimentResult:
    """Fit, select, score and write a run directory.

    Raises:
        FeatureError: features missing from the store (says which extract to run).
        TaskError: the corpus lacks a task's columns.
        ValueError: unknown head, no Train/Val labels.
    """
    t0 = time.perf_counter()
    store = FeatureStore(cfg.workdir)
    corpus = open_corpus(cfg.workdir)
    tasks = [resolve_task(t, corpus.labels) for t in parse_tasks(cfg.task)]
    head = get_head(cfg.head)
    requests = [FeatureRequest(f, layer=cfg.layer, pooling=cfg.pooling) for f in cfg.features]
    fit_options = FitOptions(head_options=dict(cfg.options), n_jobs=cfg.n_jobs)
    ds = head.load_dataset(store, corpus, tasks, requests, fit_options)
    log.info("%d clips (%d Train, %d Val, %d Test) x %d features", len(ds.ids), len(ds.rows("Train")),
             len(ds.rows("Val")), len(ds.rows("Test")), ds.X.shape[1])
    val_ids = [ds.ids[i] for i in ds.rows("Val")]
    for t in tasks:  # a constant Val target: refused, CCC would be undefined (data.tasks)
        check_varied_targets(t, corpus.labels, val_ids)
    run_name = cfg.run_name or default_run_name(cfg)
    cfg = replace(cfg, run_name=run_name)
    run_dir = rundir.run_dir(cfg.workdir, run_name)
    rundir.make_run_dir(run_dir)
    fit_options = replace(fit_options, run_config=asdict(cfg))

    per_task: dict[str, Any] = {}
    va, te = ds.rows("Val"), ds.rows("Test")
    extras: dict[str, Any] = {}
    seed_preds: dict[str, list[dict[str, np.ndarray]]] = {t.name: [] for t in tasks}
    seed_scores: dict[str, list[float]] = {t.name: [] for t in tasks}
    chosen: dict[str, Any] = {}
    excluded: dict[str, Any] = {}
    for seed in range(cfg.seeds):
        result = head.fit(ds, tasks, seed=seed, out_dir=run_dir, options=fit_options)
        for t in tasks:
            seed_preds[t.name].append(result.predictions[t.name])
        if result.per_task:  # one model per task: parameters per task and seed
            for t in tasks:
                chosen.setdefault(t.name, {})[f"seed{seed}"] = result.params[t.name]
        else:  # one model for all tasks
            chosen[f"seed{seed}"] = result.params
        excluded.update(result.excluded)
        for t in tasks:
            truth_va = {k: v[va] for k, v in ds.truths[t.name].items()}
            pred_va = {k: v[va] for k, v in seed_preds[t.name][-1].items()}
            seed_scores[t.name].append(score_task(t, truth_va, pred_va)["score"])

    for t in tasks:
        # The reported predictions are those of the median-scoring seed (a real model's output).
        order = np.argsort(seed_scores[t.name])
        best = int(order[len(order) // 2])
        preds = seed_preds[t.name][best]
        truth_va = {k: v[va] for k, v in ds.truths[t.name].items()}
        pred_va = {k: v[va] for k, v in preds.items()}
        val = score_task(t, truth_va, pred_va)
        val["ci"] = list(bootstrap_task(t, truth_va, pred_va, n_boot=cfg.n_boot, seed=0))
        val["ci_level"] = 0.95
        val["score"] = float(np.mean(seed_scores[t.name]))
        val["score_std"] = float(np.std(seed_scores[t.name], ddof=1)) if cfg.seeds > 1 else 0.0
        val["seed_scores"] = [float(s) for s in seed_scores[t.name]]
        val["n"] = int(len(va))
        entry: dict[str, Any] = {"val": val}
        truth_te = {k: v[te] for k, v in ds.truths[t.name].items()}
        has_test_labels = any(labelled(tg.kind, truth_te[tg.name]).any() for tg in t.targets)
        if has_test_labels:
            entry["test"] = score_task(t, truth_te, {k: v[te] for k, v in preds.items()})
        per_task[t.name] = entry
        _write_predictions(run_dir / f"predictions_val_{rundir.safe_name(t.name)}.csv", corpus, t,
                           [ds.ids[i] for i in va], {k: v[va] for k, v in preds.items()})
        if len(te):
            _write_predictions(run_dir / f"predictions_test_{rundir.safe_name(t.name)}.csv", corpus, t,
                               [ds.ids[i] for i in te], {k: v[te] for k, v in preds.items()})

    if len(tasks) == 1:
        top = per_task[tasks[0].name]
        val_top = top["val"]
    else:
        scores = [per_task[t.name]["val"]["score"] for t in tasks]
        val_top = {"score": float(np.mean(scores)),
                   "metric": "mean of task headlines (" + ", ".join(f"{t.name}: {t.headline}" for t in tasks) + ")",
                   "per_column": {c: v for t in tasks for c, v in per_task[t.name]["val"]["per_column"].items()}}
    metrics_out = {
        "run": run_name, "task": cfg.task, "head": cfg.head, "features": ds.feature_desc,
        "layout": corpus.layout, "val": val_top, "tasks": per_task, "selection": chosen,
        "excluded_missing_labels": excluded,
        "excluded_missing_features": ds.excluded_missing_features,
        "n_clips": {s: int(len(ds.rows(s))) for s in ("Train", "Val", "Test")},
        "seconds": round(time.perf_counter() - t0, 3),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        **extras,
    }
    if len(tasks) == 1 and "test" in per_task[tasks[0].name]:
        metrics_out["test"] = per_task[tasks[0].name]["test"]
    config_out = {**asdict(cfg), "features": list(cfg.features), "run_name": run_name,
                  "feature_sets": ds.feature_desc, "corpus": corpus.layout}
    rundir.write_json(run_dir / "config.json", config_out)
    rundir.write_json(run_dir / "metrics.json", metrics_out)
    log.info("run %s: Val %s = %.4f", run_name, val_top["metric"], val_top["score"])
    return ExperimentResult(run_dir, metrics_out)


__all__ = ["ExperimentConfig", "ExperimentResult", "run_experiment", "default_run_name", "run_dir_of"]
