"""One experiment: cached features + a task + a head -> a run directory.

Fits on Train, selects on Val, reports Val scores with a bootstrap confidence interval and
writes Test predictions in the challenge submission format::

    WORKDIR/runs/<run-name>/config.json         resolved configuration (seed included)
    WORKDIR/runs/<run-name>/metrics.json        metrics["val"]["score"], ["metric"], per column...
    WORKDIR/runs/<run-name>/predictions_<split>_<task>.csv

Classical heads (``heads.baselines``) are handled here; torch heads (``heads.nets``) go through
the training loop in ``heads.train`` when it is available for the head.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.corpus import Corpus
from data.tasks import Task, check_varied_targets, parse_tasks, resolve_task, target_array
from data.workdir import open_corpus
from extract.store import FeatureStore
from heads.evaluate import bootstrap_task, score_task
from heads.features import FeatureRequest, load_matrix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run (saved as config.json).

    Attributes:
        workdir: the workdir (store + corpus reference).
        task: task spec, e.g. ``avb-high`` or ``avb-high,avb-type`` or ``classify:type``.
        features: feature specs / keys, concatenated in order.
        head: head name from the registry.
        layer: SSL layer (None = last stored); pooling: SSL pooling.
        seeds: number of seeds (0..seeds-1); mean and std are reported.
        n_boot: bootstrap resamples for the Val CI.
        run_name: folder name under runs/ (default: made from the settings and the time).
        n_jobs: CPU threads for heads that use them.
        options: head-specific options (torch heads: epochs, lr, weighting, loss, ...).
    """

    workdir: str
    task: str
    features: tuple[str, ...]
    head: str
    layer: int | None = None
    pooling: str = "mean"
    seeds: int = 1
    n_boot: int = 500
    run_name: str | None = None
    n_jobs: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentResult:
    run_dir: Path
    metrics: dict[str, Any]


@dataclass
class Dataset:
    """Aligned arrays of one experiment: ids, split of each id, features, per-task truths."""

    ids: list[str]
    split: np.ndarray                 # (n,) 'Train' | 'Val' | 'Test'
    X: np.ndarray                     # (n, D) float32
    tasks: list[Task]
    truths: dict[str, dict[str, np.ndarray]]   # task -> target -> labels
    feature_desc: list[dict[str, Any]]
    excluded_missing_features: int = 0

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def build_dataset(store: FeatureStore, corpus: Corpus, tasks: Sequence[Task],
                  requests: Sequence[FeatureRequest]) -> Dataset:
    """Load features for every clip with a split and the labels of every task's targets."""
    clips = corpus.clips[corpus.clips["split"].isin(["Train", "Val", "Test"])]
    ids = list(clips.index)
    X, present, desc = load_matrix(store, requests, ids)
    missing = int((~present).sum())
    if missing:
        log.warning("%d clip(s) have no stored features (failed or not extracted) and are left out",
                    missing)
    keep = np.flatnonzero(present)
    ids = [ids[i] for i in keep]
    X = X[keep]
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        log.warning("%d clip(s) have NaN/Inf features and are left out", int(bad.sum()))
        ids = [c for c, b in zip(ids, bad) if not b]
        X = X[~bad]
        missing += int(bad.sum())
    split = clips.loc[ids, "split"].to_numpy()
    truths = {t.name: {tg.name: target_array(tg, corpus.labels, ids) for tg in t.targets} for t in tasks}
    return Dataset(ids, split, X, list(tasks), truths, desc, missing)


def _valid(target_kind: str, y: np.ndarray) -> np.ndarray:
    return (y >= 0) if target_kind == "classification" else np.isfinite(y).all(axis=1)


def _fit_classical(cfg: ExperimentConfig, ds: Dataset, task: Task, seed: int
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, int]]:
    """Fit one classical head per target; returns predictions for all rows, params, exclusions."""
    from heads import metrics
    from heads.baselines import fit_select

    tr, va = ds.rows("Train"), ds.rows("Val")
    preds, params, excluded = {}, {}, {}
    for tg in task.targets:
        y = ds.truths[task.name][tg.name]
        ok_tr, ok_va = tr[_valid(tg.kind, y[tr])], va[_valid(tg.kind, y[va])]
        excluded[tg.name] = int(len(tr) - len(ok_tr) + len(va) - len(ok_va))
        if len(ok_tr) < 2 or len(ok_va) < 1:
            raise ValueError(f"task {task.name}, target {tg.name}: {len(ok_tr)} Train and "
                             f"{len(ok_va)} Val clips with labels; need Train and Val labels")
        if tg.kind == "classification":
            score_fn, greater = metrics.uar, True
        elif tg.metric == "mae":
            score_fn, greater = metrics.mae, False
        else:
            score_fn, greater = metrics.mean_ccc_score, True
        sel = fit_select(cfg.head, tg.kind, ds.X[ok_tr], y[ok_tr], ds.X[ok_va], y[ok_va],
                         score_fn=score_fn, greater_is_better=greater, seed=seed, n_jobs=cfg.n_jobs)
        p = sel.predict(ds.X)
        if tg.kind == "regression":
            p = np.asarray(p, dtype=np.float32).reshape(len(ds.ids), -1)
            if tg.value_range is not None:
                p = np.clip(p, *tg.value_range)  # labels live in a known range
        preds[tg.name] = np.asarray(p)
        params[tg.name] = {"params": _jsonable(sel.params), "val_score_selection": float(sel.val_score)}
    return preds, params, excluded


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


FitFn = Callable[[ExperimentConfig, Dataset, Task, int], tuple[dict, dict, dict]]


def fit_function(head: str) -> FitFn:
    """The fitting routine for a head name (classical heads here; torch heads in heads.train)."""
    from heads.baselines import CLASSICAL_HEADS

    if head in CLASSICAL_HEADS:
        return _fit_classical
    try:
        from heads.train import TORCH_HEADS, fit_torch
    except ImportError:
        TORCH_HEADS, fit_torch = {}, None
    if head in TORCH_HEADS:
        return fit_torch
    known = sorted(CLASSICAL_HEADS) + sorted(TORCH_HEADS)
    raise ValueError(f"unknown head {head!r}; known heads: {', '.join(known)}")


def default_run_name(cfg: ExperimentConfig) -> str:
    feats = "+".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", f.split(":")[-1].split("/")[-1]) for f in cfg.features)
    layer = f"-l{cfg.layer}" if cfg.layer is not None else ""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg.task.replace(',', '+').replace(':', '_')}-{cfg.head}-{feats}{layer}"


def run_dir_of(cfg: ExperimentConfig) -> Path:
    """WORKDIR/runs/<run_name> of a config whose run name is resolved."""
    return Path(cfg.workdir) / "runs" / (cfg.run_name or default_run_name(cfg))


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
    fit = fit_function(cfg.head)
    requests = [FeatureRequest(f, layer=cfg.layer, pooling=cfg.pooling) for f in cfg.features]
    prepare = getattr(fit, "prepare_dataset", None)  # torch sequence heads read frames instead
    ds = prepare(cfg, store, corpus, tasks, requests) if prepare else build_dataset(store, corpus, tasks, requests)
    log.info("%d clips (%d Train, %d Val, %d Test) x %d features", len(ds.ids), len(ds.rows("Train")),
             len(ds.rows("Val")), len(ds.rows("Test")), ds.X.shape[1])
    val_ids = [ds.ids[i] for i in ds.rows("Val")]
    for t in tasks:  # a constant Val target: refused, CCC would be undefined (data.tasks)
        check_varied_targets(t, corpus.labels, val_ids)
    run_name = cfg.run_name or default_run_name(cfg)
    cfg = replace(cfg, run_name=run_name)  # fit functions find the run dir through it
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)

    per_task: dict[str, Any] = {}
    va, te = ds.rows("Val"), ds.rows("Test")
    extras: dict[str, Any] = {}
    seed_preds: dict[str, list[dict[str, np.ndarray]]] = {t.name: [] for t in tasks}
    seed_scores: dict[str, list[float]] = {t.name: [] for t in tasks}
    chosen: dict[str, Any] = {}
    excluded: dict[str, Any] = {}
    multitask_fit = getattr(fit, "multitask", False)
    for seed in range(cfg.seeds):
        if multitask_fit:  # one model for all tasks (torch multitask heads)
            all_preds, info, excl = fit(cfg, ds, tasks, seed)
            for t in tasks:
                seed_preds[t.name].append(all_preds[t.name])
            chosen[f"seed{seed}"] = info
            excluded.update(excl)
        else:
            for t in tasks:
                p, info, excl = fit(cfg, ds, t, seed)
                seed_preds[t.name].append(p)
                chosen.setdefault(t.name, {})[f"seed{seed}"] = info
                excluded[t.name] = excl
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
        has_test_labels = any(_valid(tg.kind, truth_te[tg.name]).any() for tg in t.targets)
        if has_test_labels:
            entry["test"] = score_task(t, truth_te, {k: v[te] for k, v in preds.items()})
        per_task[t.name] = entry
        _write_predictions(run_dir / f"predictions_val_{_safe(t.name)}.csv", corpus, t,
                           [ds.ids[i] for i in va], {k: v[va] for k, v in preds.items()})
        if len(te):
            _write_predictions(run_dir / f"predictions_test_{_safe(t.name)}.csv", corpus, t,
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
    _write_json(run_dir / "config.json", config_out)
    _write_json(run_dir / "metrics.json", metrics_out)
    log.info("run %s: Val %s = %.4f", run_name, val_top["metric"], val_top["score"])
    return ExperimentResult(run_dir, metrics_out)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=True))
    os.replace(tmp, path)
