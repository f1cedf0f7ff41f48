"""One (layer, pooling) summarised over seeds: Val score, its CI, the spread, Test.

Scores use :func:`heads.scoring.score_task`; the CI is THE bootstrap
(:mod:`heads.scoring.bootstrap`) with the study's shared Val resamples.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from heads.probe.data import ProbeData, labelled
from heads.scoring import Resamples, headline_resamples, percentile_ci, score_task


def summarise_seeds(data: ProbeData, seed_preds: list[dict[str, np.ndarray]],
                    resamples: Resamples) -> dict[str, Any]:
    """Seed-mean Val score, its bootstrap CI over Val clips, std over seeds; the same for Test
    (``test_score``, ``test_std``, ``test_seed_scores``) when Test has labels."""
    task = data.task
    va, te = data.rows("Val"), data.rows("Test")
    truth_va = {k: v[va] for k, v in data.truths.items()}
    scored = [score_task(task, truth_va, {k: v[va] for k, v in p.items()}) for p in seed_preds]
    seed_scores = [float(s["score"]) for s in scored]
    boot = resamples.apply(lambda W: np.mean(
        [headline_resamples(task, truth_va, {k: v[va] for k, v in p.items()}, W)
         for p in seed_preds], axis=0))
    ci = list(percentile_ci(boot))
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
        test = [float(score_task(task, truth_te, {k: v[te] for k, v in p.items()})["score"])
                for p in seed_preds]
        out["test_score"] = float(np.mean(test))  # mean over seeds, as "score"
        out["test_std"] = float(np.std(test, ddof=1)) if len(test) > 1 else 0.0
        out["test_seed_scores"] = test
    return out
