"""``svr`` / ``svc``: support-vector heads (one family, two names); SVR targets standardised on
Train; LinearSVR / LinearSVC above :data:`SVM_KERNEL_MAX_ROWS` training rows.
"""
from __future__ import annotations

from typing import Any

from sklearn.compose import TransformedTargetRegressor
from sklearn.multioutput import MultiOutputRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR

from heads.base import register_head
from heads.classical.selection import ClassicalHead, Params, Problem

SVM_CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
SVM_KERNEL_MAX_ROWS = 10_000
"""Above this many training rows the SVM heads default to LinearSVR / LinearSVC."""


class SVMHead(ClassicalHead):
    """SVR / SVC, or LinearSVR / LinearSVC above SVM_KERNEL_MAX_ROWS training rows."""

    seeded = False  # a convex / deterministic fit: every seed gives the same model

    def default_grid(self, kind: str, n_train: int) -> list[Params]:
        kernel = "rbf" if n_train <= SVM_KERNEL_MAX_ROWS else "linear"
        return [{"C": c, "kernel": kernel} for c in SVM_CS]

    def grid_keys(self, kind: str) -> frozenset[str]:
        return frozenset({"C", "kernel"})

    def required_keys(self, kind: str) -> frozenset[str]:
        return frozenset({"C"})

    def build(self, kind: str, params: Params, problem: Problem) -> Any:
        # Without a "kernel" key the size rule of default_grid applies.
        kernel = params.get("kernel") or (
            "rbf" if problem.X.shape[0] <= SVM_KERNEL_MAX_ROWS else "linear"
        )
        if kernel not in ("rbf", "linear"):
            raise ValueError(f"grid key 'kernel' must be 'rbf' or 'linear', got {kernel!r}")
        c = params["C"]
        if kind == "classification":
            if kernel == "rbf":
                return SVC(C=c, kernel="rbf", gamma="scale", class_weight="balanced",
                           random_state=problem.seed)
            return LinearSVC(C=c, class_weight="balanced", dual="auto", max_iter=10_000,
                             random_state=problem.seed)
        if kernel == "rbf":
            base: Any = SVR(C=c, kernel="rbf", gamma="scale", epsilon=0.1)
        else:
            base = LinearSVR(C=c, epsilon=0.1, dual=True, max_iter=10_000,
                             random_state=problem.seed)
        if problem.y.ndim == 2:
            base = MultiOutputRegressor(base, n_jobs=problem.n_jobs)  # one model per column
        return TransformedTargetRegressor(regressor=base, transformer=StandardScaler())


@register_head
class SVRHead(SVMHead):
    """Support-vector head (same family as ``svc``)."""

    name = "svr"
    description = "SVR / SVC (balanced), C in [0.01, 0.1, 1, 10]; linear above 10,000 rows"


@register_head
class SVCHead(SVMHead):
    """Support-vector head (same family as ``svr``)."""

    name = "svc"
    description = "SVC (balanced) / SVR, C in [0.01, 0.1, 1, 10]; linear above 10,000 rows"
