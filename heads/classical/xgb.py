"""``xgb``: gradient-boosted trees (hist), early stopping on Val, on the GPU when torch sees one."""
from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np

from heads.base import register_head
from heads.classical.selection import ClassicalHead, Params, Problem

logger = logging.getLogger(__name__)

XGB_LEARNING_RATE = 0.05
XGB_EARLY_STOPPING_ROUNDS = 50


@functools.lru_cache(maxsize=1)
def xgb_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"`` (torch imported only here)."""
    try:
        import torch  # noqa: PLC0415 (lazy: heavy, and optional for this head)
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


@register_head
class XGBHead(ClassicalHead):
    """Gradient-boosted trees (hist), early stopping on Val."""

    name = "xgb"
    # Deterministic as the command line runs it: hist trees without row / column subsampling
    # (the default grid) grow the same trees for every random_state.
    seeded = False
    description = "XGBoost hist, max_depth {3, 6} x n_estimators {200, 500}, lr 0.05"
    _keys = frozenset({
        "max_depth", "n_estimators", "learning_rate", "min_child_weight", "subsample",
        "colsample_bytree", "reg_lambda", "reg_alpha",
    })

    def default_grid(self, kind: str, n_train: int) -> list[Params]:
        return [{"max_depth": d, "n_estimators": n} for d in (3, 6) for n in (200, 500)]

    def grid_keys(self, kind: str) -> frozenset[str]:
        return self._keys

    def build(self, kind: str, params: Params, problem: Problem) -> Any:
        from xgboost import XGBClassifier, XGBRegressor  # noqa: PLC0415 (import cost)

        options = {"learning_rate": XGB_LEARNING_RATE, **params}
        cls = XGBRegressor if kind == "regression" else XGBClassifier
        has_eval = self._eval_rows(problem).any()
        return cls(
            tree_method="hist",
            device=xgb_device(),
            n_jobs=problem.n_jobs,
            random_state=problem.seed,
            early_stopping_rounds=XGB_EARLY_STOPPING_ROUNDS if has_eval else None,
            **options,
        )

    @staticmethod
    def _eval_rows(problem: Problem) -> np.ndarray:
        if problem.kind == "classification":
            assert problem.y_val_index is not None
            return problem.y_val_index >= 0  # rows of classes seen in Train
        return np.ones(len(problem.y_val), dtype=bool)

    def fit_estimator(self, estimator: Any, problem: Problem) -> Any:
        rows = self._eval_rows(problem)
        kwargs: dict[str, Any] = {"verbose": False}
        if problem.kind == "classification":
            assert problem.y_val_index is not None and problem.class_weight is not None
            kwargs["sample_weight"] = problem.sample_weight
            y_eval = problem.y_val_index[rows]
            kwargs["sample_weight_eval_set"] = [problem.class_weight[y_eval]]
        else:
            y_eval = problem.y_val[rows]
        if rows.any():
            kwargs["eval_set"] = [(problem.X_val[rows], y_eval)]
        estimator.fit(problem.X, problem.y, **kwargs)
        if rows.any():
            logger.debug("xgb: best iteration %d", estimator.best_iteration)
        return estimator
