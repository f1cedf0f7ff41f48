"""One experiment: cached features + a task + a head -> a run directory.

Fits on Train, selects on Val, reports Val scores with a bootstrap confidence interval and
writes Test predictions in the challenge submission format::

    WORKDIR/runs/<run-name>/config.json         resolved configuration (seed included)
    WORKDIR/runs/<run-name>/metrics.json        metrics["val"]["score"], ["metric"], per column...
    WORKDIR/runs/<run-name>/predictions_<split>_<task>.csv
    WORKDIR/runs/<run-name>/model.json          the saved model (heads.saved_model) beside its
                                                model_*.joblib / model_*.pt files

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
from heads import rundir, saved_model
from heads.aux_metrics import AUX_KEY
from heads.auxiliary import (ADVERSARY, TEXT_COLUMN, auxiliary_columns, score_adversary,
                             score_transcripts)
from heads.base import FitOptions
from heads.config import ExperimentConfig, TrainOptions
from heads.dataset import labelled
from heads.features import FeatureRequest
from heads.registry import HEADS, get_head
from heads.scoring import CI_LEVEL, Resamples, headline_resamples, percentile_ci, score_task

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


def check_seeds(cfg: ExperimentConfig) -> None:
    """Refuse ``seeds > 1`` for a deterministic head (every seed would be the same fit).

    Raises:
        ValueError: ``cfg.seeds`` > 1 and the head's ``seeded`` is False.
    """
    head = get_head(cfg.head)
    if cfg.seeds > 1 and not getattr(head, "seeded", True):
        seeded = sorted(n for n, h in HEADS.items() if getattr(h, "seeded", True))
        raise ValueError(
            f"--seeds {cfg.seeds}: head {cfg.head!r} is deterministic (every seed fits the same "
            f"model), so a mean or std over seeds would mean nothing; run it with --seeds 1. "
            f"Heads whose seed changes the fit: {', '.join(seeded)}")


def over_seeds(task: Task, truths: dict[str, np.ndarray],
               seed_preds: list[dict[str, np.ndarray]], median_seed: int, *,
               n_boot: int | None = None) -> dict[str, Any]:
    """Scores of one split over seeds: every number says what it is.

    ``score`` and ``per_column`` are means over seeds, ``score_std`` / ``per_column_std``
    their standard deviations (ddof=1; 0 for one seed), ``seed_scores`` every seed's headline.
    ``targets`` (per-target details: confusion, per-class recall, organisers' CCC, MAE) are
    those of the median seed, ``targets_seed``, whose predictions the run writes. With
    ``n_boot`` given, ``ci`` is the 95 % percentile bootstrap over the split's clips of the
    seed-mean headline (the same resamples for every seed; NaN for ``n_boot`` 0 or fewer
    than 3 clips).
    """
    scored = [score_task(task, truths, p) for p in seed_preds]
    out = dict(scored[median_seed])
    scores = [float(s["score"]) for s in scored]
    n = len(scores)
    out["score"] = float(np.mean(scores))
    out["score_std"] = float(np.std(scores, ddof=1)) if n > 1 else 0.0
    out["seed_scores"] = scores
    columns = list(out["per_column"])
    per_col = np.array([[s["per_column"][c] for c in columns] for s in scored], dtype=np.float64)
    out["per_column"] = {c: float(v) for c, v in zip(columns, per_col.mean(axis=0))}
    out["per_column_std"] = {c: float(v) for c, v in zip(
        columns, per_col.std(axis=0, ddof=1) if n > 1 else np.zeros(len(columns)))}
    out["aggregate"] = f"mean over {n} seed(s)"
    out["targets_seed"] = median_seed
    rows = len(next(iter(truths.values())))
    if n_boot is not None:
        if n_boot > 0 and rows >= 3:
            resamples = Resamples(rows, n_boot, 0)
            out["ci"] = list(percentile_ci(resamples.apply(lambda W: np.mean(
                [headline_resamples(task, truths, p, W) for p in seed_preds], axis=0))))
        else:
            out["ci"] = [float("nan"), float("nan")]
        out["ci_level"] = CI_LEVEL
        out["ci_method"] = (f"{int(CI_LEVEL * 100)} % percentile bootstrap over clips of the "
                            f"seed-mean score ({n_boot} resamples)")
    return out


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


def _clipping(chosen: dict[str, Any], task: Task, seed: int, per_task: bool) -> dict[str, Any]:
    """Target -> clipping record (range, clipped values per split) of the written seed's fit."""
    if not per_task:
        return {}
    params = chosen.get(task.name, {}).get(f"seed{seed}", {})
    return {tg: p["clipping"] for tg, p in params.items()
            if isinstance(p, dict) and "clipping" in p}


AUXILIARY_OPTIONS = ("adversary", "ctc")
"""Options that add seed 004's auxiliary heads (torch heads only)."""


def check_auxiliary_head(cfg: ExperimentConfig) -> None:
    """Refuse ``adversary`` / ``ctc`` for a classical head.

    Raises:
        ValueError: the head is not a torch head (names the torch heads).
    """
    given = [k for k in AUXILIARY_OPTIONS if cfg.options.get(k) is not None]
    if given and get_head(cfg.head).family != "torch":
        torch_heads = sorted(n for n, h in HEADS.items() if h.family == "torch")
        raise ValueError(
            f"--{given[0]} trains an extra head on a torch net's shared representation (seed "
            f"004: the loss L = L_task + alpha L_ctc + beta L_speaker needs gradients through "
            f"the head); head {cfg.head!r} is classical and has none. Use a torch head: "
            f"{', '.join(torch_heads)}")


class ConfigError(ValueError):
    """A run's settings that cannot run (seeds, options for the wrong head family, a bad
    training option); the message says which and what to do."""


def check_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check a run's settings before anything is read or trained, as ``train`` and
    :meth:`vocal_probe.Workdir.train` both do, in this order: the number of seeds,
    ``adversary`` / ``ctc`` on a classical head, options on a classical head, the torch
    heads' options, and what the store must hold (:func:`heads.recipes.check_features`).

    Returns:
        ``cfg`` itself.

    Raises:
        ConfigError: seeds < 1, options for a classical head, an invalid training option.
        ValueError: an unknown head (lists the known ones).
        heads.features.FeatureError: the store lacks what the run reads (names the
            ``extract`` command).
    """
    from heads.recipes import check_features

    if cfg.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {cfg.seeds}")
    head = HEADS.get(cfg.head)
    torch_head = head is not None and head.family == "torch"
    if head is not None and not torch_head:
        check_auxiliary_head(cfg)
    if cfg.options and not torch_head:
        raise ConfigError(f"options {sorted(cfg.options)} apply to torch heads only; head "
                          f"{cfg.head!r} is classical")
    if torch_head:
        try:
            TrainOptions.from_dict(cfg.options)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    check_features(cfg)  # a missing set, layer or pooling: the whole extract command
    return cfg


def build_config(workdir: str | Path, *, task: str, features: Sequence[str] | str, head: str,
                 layer: int | None = None, pooling: str = "mean", seeds: int = 1,
                 n_boot: int = 500, run_name: str | None = None, n_jobs: int = 1,
                 options: dict[str, Any] | None = None) -> ExperimentConfig:
    """The checked :class:`ExperimentConfig` of one run (``train``'s flags as keywords;
    ``features`` one spec or several): :func:`check_config` of what it builds.

    Raises:
        ConfigError, ValueError, heads.features.FeatureError: as :func:`check_config`.
    """
    cfg = ExperimentConfig(workdir=str(workdir), task=task,
                           features=(features,) if isinstance(features, str) else tuple(features),
                           head=head, layer=layer, pooling=pooling, seeds=seeds, n_boot=n_boot,
                           run_name=run_name, n_jobs=n_jobs, options=dict(options or {}))
    return check_config(cfg)


def _auxiliary_metrics(opts: TrainOptions, fits: list[dict[str, Any]], split: np.ndarray,
                       columns: dict[str, list]) -> dict[str, Any]:
    """metrics.json's ``aux`` block (:mod:`heads.aux_metrics`) over the seeds' fits."""
    out: dict[str, Any] = {}
    if opts.adversary is not None:
        out.update(score_adversary([f[ADVERSARY] for f in fits], split,
                                   spec=opts.adversary, mode=opts.adversary_mode))
    if opts.ctc is not None:
        text = fits[0][TEXT_COLUMN]
        out["ctc"] = score_transcripts(columns[TEXT_COLUMN], [f[TEXT_COLUMN]["hypotheses"] for f in fits],
                                       split, alpha=opts.ctc, vocab_file=text["vocab"],
                                       vocab_size=text["vocab_size"])
    return {AUX_KEY: out}


def _write_transcripts(path: Path, ids: Sequence[str], references: Sequence[str | None],
                       hypotheses: Sequence[str]) -> None:
    pd.DataFrame({"File_ID": list(ids), "reference": [r or "" for r in references],
                  "hypothesis": list(hypotheses)}).to_csv(path, index=False)


def run_experiment(cfg: ExperimentConfig, *, recipe: dict[str, Any] | None = None,
                   corpus: Corpus | None = None) -> ExperimentResult:
    """Fit, select, score and write a run directory.

    ``recipe`` (:meth:`heads.recipes.Recipe.run_record`) is recorded as ``recipe`` in
    metrics.json and config.json: which recipe, what of it did not apply, the published numbers
    that do. ``corpus`` replaces the workdir's corpus (a cross-validation fold, with its own
    Train / Val / Test: :mod:`heads.crossval`).

    Raises:
        FeatureError: features missing from the store (says which extract to run).
        TaskError: the corpus lacks a task's columns.
        ValueError: unknown head, no Train/Val labels.
    """
    t0 = time.perf_counter()
    store = FeatureStore(cfg.workdir)
    if corpus is None:
        corpus = open_corpus(cfg.workdir, need_split=True)
    tasks = [resolve_task(t, corpus.labels) for t in parse_tasks(cfg.task)]
    head = get_head(cfg.head)
    check_seeds(cfg)
    check_auxiliary_head(cfg)
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
    aux_opts = TrainOptions.from_dict(cfg.options) if head.family == "torch" else None
    if aux_opts is not None and (aux_opts.adversary is not None or aux_opts.ctc is not None):
        fit_options = replace(fit_options, columns=auxiliary_columns(corpus, ds.ids, aux_opts))
    aux_fits: list[dict[str, Any]] = []

    per_task: dict[str, Any] = {}
    va, te = ds.rows("Val"), ds.rows("Test")
    extras: dict[str, Any] = {}
    seed_preds: dict[str, list[dict[str, np.ndarray]]] = {t.name: [] for t in tasks}
    seed_scores: dict[str, list[float]] = {t.name: [] for t in tasks}
    chosen: dict[str, Any] = {}
    excluded: dict[str, Any] = {}
    seed_files: list[dict[str, dict[str, str]]] = []  # per seed: task -> target -> model file
    for seed in range(cfg.seeds):
        result = head.fit(ds, tasks, seed=seed, out_dir=run_dir, options=fit_options)
        seed_files.append(saved_model.model_files(head.family, tasks, seed, result.models))
        for t in tasks:
            seed_preds[t.name].append(result.predictions[t.name])
        if result.per_task:  # one model per task: parameters per task and seed
            for t in tasks:
                chosen.setdefault(t.name, {})[f"seed{seed}"] = result.params[t.name]
        else:  # one model for all tasks
            chosen[f"seed{seed}"] = result.params
        excluded.update(result.excluded)
        if result.auxiliary:
            aux_fits.append(result.auxiliary)
        for t in tasks:
            truth_va = {k: v[va] for k, v in ds.truths[t.name].items()}
            pred_va = {k: v[va] for k, v in seed_preds[t.name][-1].items()}
            seed_scores[t.name].append(score_task(t, truth_va, pred_va)["score"])

    model_tasks = []
    for t in tasks:
        # The written predictions are those of the median-scoring seed (a real model's output).
        order = np.argsort(seed_scores[t.name])
        best = int(order[len(order) // 2])
        model_tasks.append(saved_model.task_entry(t, best, seed_files[best][t.name]))
        preds = seed_preds[t.name][best]
        truth_va = {k: v[va] for k, v in ds.truths[t.name].items()}
        val = over_seeds(t, truth_va, [{k: v[va] for k, v in p.items()} for p in seed_preds[t.name]],
                         best, n_boot=cfg.n_boot)
        val["n"] = int(len(va))
        entry: dict[str, Any] = {"val": val, "predictions_seed": best}
        truth_te = {k: v[te] for k, v in ds.truths[t.name].items()}
        has_test_labels = any(labelled(tg.kind, truth_te[tg.name]).any() for tg in t.targets)
        if has_test_labels:
            entry["test"] = over_seeds(t, truth_te, [{k: v[te] for k, v in p.items()}
                                                     for p in seed_preds[t.name]], best)
            entry["test"]["n"] = int(len(te))
        clipping = _clipping(chosen, t, best, result.per_task)
        if clipping:
            entry["clipping"] = clipping
        per_task[t.name] = entry
        _write_predictions(run_dir / f"predictions_val_{rundir.safe_name(t.name)}.csv", corpus, t,
                           [ds.ids[i] for i in va], {k: v[va] for k, v in preds.items()})
        if len(te):
            _write_predictions(run_dir / f"predictions_test_{rundir.safe_name(t.name)}.csv", corpus, t,
                               [ds.ids[i] for i in te], {k: v[te] for k, v in preds.items()})

    if aux_fits:
        extras.update(_auxiliary_metrics(aux_opts, aux_fits, ds.split, fit_options.columns))
        if TEXT_COLUMN in aux_fits[0]:  # the transcripts of the seed the first task writes
            hyps = aux_fits[per_task[tasks[0].name]["predictions_seed"]][TEXT_COLUMN]["hypotheses"]
            refs = fit_options.columns[TEXT_COLUMN]
            for split_name, rows in (("val", va), ("test", te)):
                if len(rows):
                    _write_transcripts(run_dir / f"predictions_{split_name}_text.csv",
                                       [ds.ids[i] for i in rows], [refs[i] for i in rows],
                                       [hyps[i] for i in rows])

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
        **({"recipe": recipe} if recipe is not None else {}),
    }
    if len(tasks) == 1 and "test" in per_task[tasks[0].name]:
        metrics_out["test"] = per_task[tasks[0].name]["test"]
    config_out = {**asdict(cfg), "features": list(cfg.features), "run_name": run_name,
                  "feature_sets": ds.feature_desc, "corpus": corpus.layout,
                  **({"recipe": recipe} if recipe is not None else {})}
    rundir.write_json(run_dir / "config.json", config_out)
    saved_model.write_manifest(run_dir, head=cfg.head, family=head.family,
                               input_kind=head.input_kind,
                               features=saved_model.feature_entries(store, ds.feature_desc),
                               tasks=model_tasks, options=cfg.options, pooling=cfg.pooling)
    rundir.write_json(run_dir / "metrics.json", metrics_out)
    log.info("run %s: Val %s = %.4f", run_name, val_top["metric"], val_top["score"])
    return ExperimentResult(run_dir, metrics_out)


__all__ = ["ExperimentConfig", "ExperimentResult", "ConfigError", "build_config", "check_config",
           "run_experiment", "default_run_name", "run_dir_of"]
