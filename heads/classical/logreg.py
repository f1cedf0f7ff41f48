"""``logreg``: LogisticRegression (balanced) for classes, warm-started along C; Ridge for
regression targets (the ``ridge`` head's search).
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

from heads.base import register_head
from heads.classical.ridge import RIDGE_ALPHAS, ridge_search
from heads.classical.selection import ClassicalHead, GridBest, Params, Problem, SearchResult

logger = logging.getLogger(__name__)

LOGREG_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 2, 6))


@register_head
class LogRegHead(ClassicalHead):
    """LogisticRegression (balanced) for classes; Ridge for regression targets."""

    seeded = False  # a convex / deterministic fit: every seed gives the same model

    name = "logreg"
    description = "LogisticRegression (balanced), C in logspace(-3, 2, 6); Ridge for regression"

    def default_grid(self, kind: str, n_train: int) -> list[Params]:
        if kind == "regression":
            return [{"alpha": a} for a in RIDGE_ALPHAS]
        return [{"C": c} for c in LOGREG_CS]

    def grid_keys(self, kind: str) -> frozenset[str]:
        return frozenset({"alpha"} if kind == "regression" else {"C"})

    def required_keys(self, kind: str) -> frozenset[str]:
        return self.grid_keys(kind)

    def build(self, kind: str, params: Params, problem: Problem) -> Any:
        if kind == "regression":
            return Ridge(alpha=params["alpha"])
        return LogisticRegression(
            C=params["C"], class_weight="balanced", max_iter=1000, random_state=problem.seed
        )

    def search(self, problem: Problem, grid: list[Params]) -> SearchResult:
        if problem.kind == "regression":
            return ridge_search(self.name, problem, grid)
        # Warm start: each C starts from the previous solution (same optimum, fewer steps).
        estimator = self.build(problem.kind, grid[0], problem).set_params(warm_start=True)
        best = GridBest(problem.greater_is_better)
        scores: list[tuple[Params, float]] = []
        for params in grid:
            start = time.perf_counter()
            estimator.set_params(C=params["C"]).fit(problem.X, problem.y)
            score = problem.score(estimator.predict(problem.X_val))
            scores.append((params, score))
            if best.offer(params, score, lambda: copy.deepcopy(estimator)):
                best.model.set_params(warm_start=False)
            logger.debug(
                "%s C=%g: val score %.4f (%.1f s)",
                self.name, params["C"], score, time.perf_counter() - start,
            )
        return scores, best
