"""Classical heads (scikit-learn, XGBoost) with hyper-parameter selection on Val.

One public entry point, :func:`fit_select`; every head is a :class:`heads.base.Head` of family
``classical`` in :data:`heads.base.HEADS` (:func:`classical_heads` lists them). Every head handles both target kinds:

=========  ==========================================  ======================================
head       regression (y: (n,) or (n, k) floats)       classification (y: integer codes)
=========  ==========================================  ======================================
ridge      ``Ridge`` (multi-column natively)           ``RidgeClassifier``, balanced weights
logreg     ``Ridge`` (same search as ``ridge``)        ``LogisticRegression``, balanced
svr, svc   ``SVR`` on standardised targets, one        ``SVC``, balanced
           model per column for (n, k)
xgb        ``XGBRegressor`` (multi-output natively)    ``XGBClassifier``, balanced sample
                                                       weights
=========  ==========================================  ======================================

``svr`` and ``svc`` are two names for the same support-vector family (papers and configs use
either); the kind picks SVR or SVC. Above :data:`SVM_KERNEL_MAX_ROWS` training rows the RBF
kernel machines (quadratic in n) are replaced by ``LinearSVR`` / ``LinearSVC``; the chosen
``kernel`` (``"rbf"`` or ``"linear"``) is part of the params and a grid may set it. SVR
targets are standardised on Train (``TransformedTargetRegressor``) so that ``epsilon=0.1`` and
the C grid mean the same for every target scale.

Default grids (ties go to the first entry in grid order):

* ridge: ``alpha`` in ``logspace(-2, 4, 13)``;
* logreg: ``C`` in ``logspace(-3, 2, 6)`` (regression: the ridge ``alpha`` grid);
* svr / svc: ``C`` in ``[0.01, 0.1, 1, 10]``;
* xgb: ``max_depth`` in {3, 6} x ``n_estimators`` in {200, 500}, learning rate 0.05,
  ``tree_method="hist"``, early stopping on Val after 50 rounds without improvement,
  ``device="cuda"`` when ``torch.cuda.is_available()`` (torch imported lazily) else CPU.

Protocol. Features are standardised by a ``StandardScaler`` fitted on Train only; it is the
first step of the returned ``Pipeline``. Each grid point is fitted on Train and scored on Val
with ``score_fn(y_val, prediction)``; the best model is returned **as fitted on Train**. It is
not refitted on Train + Val, so ``val_score`` is the honest score of the returned model on
data it did not train on; it is still optimistic as an estimate of Test performance, since
Val chose the hyper-parameters (and, for xgb, the number of trees). Report Test scores for
claims.

Ridge search. The whole alpha path shares one Gram matrix: ``X'X`` (or ``XX'`` when there are
fewer rows than features) is computed once, then one Cholesky solve per alpha. On a 2-core
machine, with 20,000 x 6,373 ComParE features, ``X'X`` costs about 10 s and each Cholesky
about 1.5 s, while one eigendecomposition (the RidgeCV trick) costs about 35 s, so 13
Cholesky solves are the cheaper shared path. The selected coefficients are written into a
scikit-learn ``Ridge`` / ``RidgeClassifier`` (same solution as its own ``fit``; tested).

Inputs are checked: rows with NaN labels are refused (exclude unlabelled rows first), rows
with NaN / infinite features are refused (check the feature set). Class weights are
``"balanced"`` (n / (classes x count)) because UAR is the classification metric.
"""
from __future__ import annotations

import abc
import copy
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import scipy.linalg
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.model_selection import ParameterGrid
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR

from data.tasks import Task
from heads import metrics
from heads.base import HEADS, FitOptions, FitResult, VectorHead, register_head
from heads.dataset import Dataset, labelled
from heads.rundir import jsonable
from heads.saved_model import save_classical

logger = logging.getLogger(__name__)

KINDS = ("regression", "classification")
"""Target kinds every head supports."""

RIDGE_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 4, 13))
LOGREG_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 2, 6))
SVM_CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
SVM_KERNEL_MAX_ROWS = 10_000
"""Above this many training rows the SVM heads default to LinearSVR / LinearSVC."""
XGB_LEARNING_RATE = 0.05
XGB_EARLY_STOPPING_ROUNDS = 50

ScoreFn = Callable[[np.ndarray, np.ndarray], float]
Params = dict[str, Any]
GridSpec = Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]
"""A list of param dicts, or a dict of lists expanded to every combination."""


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------


@dataclass
class FitSelection:
    """The model chosen on Val, fitted on Train, with the record of the search.

    Attributes:
        model: fitted ``Pipeline`` (``StandardScaler`` -> estimator). For classification it
            predicts indices into ``classes``; :meth:`predict` maps them back.
        params: the chosen grid entry.
        val_score: ``score_fn(y_val, predict(X_val))`` of the returned model.
        grid_scores: ``(params, val score)`` of every grid entry, in grid order.
        head: the head's name in :func:`classical_heads`.
        kind: ``"regression"`` or ``"classification"``.
        classes: the class codes seen in ``y_train`` (classification), sorted.
        n_outputs: number of target columns for 2-D regression targets, ``None`` for 1-D.
    """

    model: Pipeline
    params: Params
    val_score: float
    grid_scores: list[tuple[Params, float]]
    head: str
    kind: str
    classes: np.ndarray | None = None
    n_outputs: int | None = None

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Predict regression values or class codes.

        Args:
            X: features, shape (n, d), same columns as in training.

        Returns:
            Regression: shape (n,) or (n, k) like ``y_train``. Classification: (n,) class
            codes from ``classes``.

        Raises:
            ValueError: for rows with NaN / infinite features or a wrong feature count.
        """
        X = _check_features(X, "X")
        expected = self.model.named_steps["scale"].n_features_in_
        if X.shape[1] != expected:
            raise ValueError(f"X must have {expected} feature columns, got {X.shape[1]}")
        out = np.asarray(self.model.predict(X))
        if self.kind == "classification":
            assert self.classes is not None
            return self.classes[out.astype(np.int64)]
        out = out.astype(np.float64)  # xgb predicts float32
        if self.n_outputs is None:
            return out.reshape(X.shape[0])
        return out.reshape(X.shape[0], self.n_outputs)


# --------------------------------------------------------------------------------------------
# the data one search sees
# --------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """Standardised arrays and scoring for one search (built by :func:`fit_select`).

    Attributes:
        kind: ``"regression"`` or ``"classification"``.
        X: standardised Train features, (n, d).
        y: Train targets: float64 (n,) / (n, k), or class indices 0..C-1 (n,).
        X_val: standardised Val features, (m, d).
        y_val: Val targets as given (what ``score_fn`` sees).
        y_val_index: classification: Val class indices, -1 for classes absent from Train.
        classes: classification: sorted class codes of Train.
        sample_weight: classification: balanced per-row weights of Train.
        score_fn: ``score_fn(y_val, prediction) -> float``.
        greater_is_better: direction of ``score_fn``.
        seed: random seed of the estimators.
        n_jobs: parallel jobs for the estimators that take them.
    """

    kind: str
    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    score_fn: ScoreFn
    greater_is_better: bool
    seed: int
    n_jobs: int
    y_val_index: np.ndarray | None = None
    classes: np.ndarray | None = None
    sample_weight: np.ndarray | None = None
    class_weight: np.ndarray | None = field(default=None, repr=False)

    def score(self, prediction: np.ndarray) -> float:
        """Score a prediction on Val (class indices for classification)."""
        prediction = np.asarray(prediction)
        if self.kind == "classification":
            assert self.classes is not None
            prediction = self.classes[prediction.astype(np.int64).reshape(-1)]
        else:
            prediction = prediction.reshape(self.y_val.shape)
        return float(self.score_fn(self.y_val, prediction))


class GridBest:
    """The best grid entry so far: params, Val score and fitted estimator.

    Ties keep the earlier entry (grid order decides); a NaN score never beats a number.
    """

    def __init__(self, greater_is_better: bool) -> None:
        self.greater = greater_is_better
        self.params: Params | None = None
        self.score = float("nan")
        self.model: Any = None

    def offer(self, params: Params, score: float, make_model: Callable[[], Any]) -> bool:
        """Record the entry if it beats the best so far; ``make_model()`` is then called."""
        if self.params is not None:
            if np.isnan(score):
                return False
            if not np.isnan(self.score) and not (
                score > self.score if self.greater else score < self.score
            ):
                return False
        self.params, self.score = params, score
        self.model = make_model()
        return True


SearchResult = tuple[list[tuple[Params, float]], GridBest]
"""What a head's search returns: ``(params, Val score)`` per grid entry, and the best."""


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


class ClassicalHead(VectorHead, abc.ABC):
    """One head family. Subclasses set ``name`` / ``description`` and build estimators.

    As a :class:`heads.base.Head`, it fits one model per target of every task (one task at a
    time, :meth:`fit`), selecting its grid entry on Val.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    family: ClassVar[str] = "classical"

    def fit(self, dataset: Dataset, tasks: Sequence[Task], *, seed: int, out_dir: Any,
            options: FitOptions) -> FitResult:
        """One model per target on the labelled Train rows, selected on the labelled Val rows.

        Returns predictions for every row (regression clipped to a known label range), the
        chosen parameters per task, and per target the Train and Val rows without a label.

        Raises:
            ValueError: a target without Train or Val labels.
        """
        preds: dict[str, dict[str, np.ndarray]] = {}
        params: dict[str, Any] = {}
        excluded: dict[str, dict[str, int]] = {}
        for task in tasks:
            preds[task.name], params[task.name], excluded[task.name] = self._fit_task(
                dataset, task, seed, options.n_jobs, out_dir)
        return FitResult(preds, params, excluded, per_task=True)

    def _fit_task(self, ds: Dataset, task: Task, seed: int, n_jobs: int, out_dir: Any = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, int]]:
        tr, va = ds.rows("Train"), ds.rows("Val")
        preds, params, excluded = {}, {}, {}
        for tg in task.targets:
            y = ds.truths[task.name][tg.name]
            ok_tr, ok_va = tr[labelled(tg.kind, y[tr])], va[labelled(tg.kind, y[va])]
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
            sel = fit_select(self.name, tg.kind, ds.X[ok_tr], y[ok_tr], ds.X[ok_va], y[ok_va],
                             score_fn=score_fn, greater_is_better=greater, seed=seed, n_jobs=n_jobs)
            save_classical(out_dir, task.name, tg.name, seed, sel)  # the run keeps its model
            p = sel.predict(ds.X)
            if tg.kind == "regression":
                p = np.asarray(p, dtype=np.float32).reshape(len(ds.ids), -1)
                if tg.value_range is not None:
                    p = np.clip(p, *tg.value_range)  # labels live in a known range
            preds[tg.name] = np.asarray(p)
            params[tg.name] = {"params": jsonable(sel.params),
                               "val_score_selection": float(sel.val_score)}
        return preds, params, excluded

    @abc.abstractmethod
    def default_grid(self, kind: str, n_train: int) -> list[Params]:
        """The documented default grid for ``kind`` and ``n_train`` training rows."""

    @abc.abstractmethod
    def grid_keys(self, kind: str) -> frozenset[str]:
        """Keys a grid entry may use for ``kind``."""

    def required_keys(self, kind: str) -> frozenset[str]:
        """Keys every grid entry must set for ``kind``."""
        return frozenset()

    @abc.abstractmethod
    def build(self, kind: str, params: Params, problem: Problem) -> Any:
        """An unfitted estimator for one grid entry."""

    def fit_estimator(self, estimator: Any, problem: Problem) -> Any:
        """Fit ``estimator`` on the standardised Train arrays of ``problem``."""
        return estimator.fit(problem.X, problem.y)

    def search(self, problem: Problem, grid: list[Params]) -> SearchResult:
        """Fit every grid entry on Train, score it on Val, keep the best fitted estimator."""
        best = GridBest(problem.greater_is_better)
        scores: list[tuple[Params, float]] = []
        for params in grid:
            start = time.perf_counter()
            estimator = self.fit_estimator(self.build(problem.kind, params, problem), problem)
            score = problem.score(estimator.predict(problem.X_val))
            scores.append((params, score))
            best.offer(params, score, lambda: estimator)
            logger.debug(
                "%s %s %s: val score %.4f (%.1f s)",
                self.name, problem.kind, params, score, time.perf_counter() - start,
            )
        return scores, best


def classical_heads() -> dict[str, ClassicalHead]:
    """Name -> head of every classical head in :data:`heads.base.HEADS`, sorted by name."""
    return {n: h for n, h in sorted(HEADS.items()) if h.family == "classical"}  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# ridge: one Gram matrix for the whole alpha path
# --------------------------------------------------------------------------------------------


def ridge_path(
    X: np.ndarray,  # noqa: N803
    Y: np.ndarray,  # noqa: N803
    alphas: Sequence[float],
    *,
    sample_weight: np.ndarray | None = None,
) -> Iterator[tuple[float, np.ndarray, np.ndarray]]:
    """Ridge solutions with intercept for several alphas from one Gram matrix.

    Solves ``min_b,c sum_i w_i ||y_i - x_i b - c||^2 + alpha ||b||^2`` (scikit-learn's
    ``Ridge`` objective, sample weights not normalised). With n >= d the primal system
    ``(Xc' W Xc + alpha I) b = Xc' W Yc`` is used, otherwise the dual
    ``b = Xc' W^(1/2) (K + alpha I)^-1 W^(1/2) Yc`` with ``K = W^(1/2) Xc Xc' W^(1/2)``;
    ``Xc``, ``Yc`` are centred on the weighted means.

    Args:
        X: features, (n, d).
        Y: targets, (n, k).
        alphas: regularisation strengths (> 0).
        sample_weight: per-row weights (n,), or ``None`` for 1.

    Yields:
        ``(alpha, coef (d, k), intercept (k,))`` for each alpha, in the given order.

    Raises:
        ValueError: for a non-positive alpha or mismatched shapes.

    Examples:
        >>> X = np.array([[0.0], [1.0], [2.0]]); Y = np.array([[1.0], [3.0], [5.0]])
        >>> [(a, b.round(3).tolist(), c.round(3).tolist()) for a, b, c in ridge_path(X, Y, [2.0])]
        [(2.0, [[1.0]], [2.0])]
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X must be (n, d) and Y (n, k), got {X.shape} and {Y.shape}")
    bad = [a for a in alphas if not a > 0]
    if bad:
        raise ValueError(f"alphas must be > 0, got {bad}")
    n, d = X.shape
    if sample_weight is None:
        total = float(n)
        x_mean = X.mean(axis=0)
        y_mean = Y.mean(axis=0)
    else:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        total = float(sample_weight.sum())
        x_mean = sample_weight @ X / total
        y_mean = sample_weight @ Y / total
    Yc = Y - y_mean  # (n, k)

    if n >= d:
        # Xc' W Xc = X' W X - total * m m'; Xc' W Yc = X' W Yc since sum_i w_i Yc_i = 0.
        Xw = X if sample_weight is None else X * sample_weight[:, None]
        gram = X.T @ Xw - total * np.outer(x_mean, x_mean)  # (d, d)
        rhs = Xw.T @ Yc  # (d, k)
        del Xw
        for alpha in alphas:
            coef = _spd_solve(gram, float(alpha), rhs)
            yield float(alpha), coef, y_mean - x_mean @ coef
    else:
        root = np.ones(n) if sample_weight is None else np.sqrt(sample_weight)
        Xs = (X - x_mean) * root[:, None]  # (n, d)
        kernel = Xs @ Xs.T  # (n, n)
        Ys = Yc * root[:, None]
        for alpha in alphas:
            coef = Xs.T @ _spd_solve(kernel, float(alpha), Ys)
            yield float(alpha), coef, y_mean - x_mean @ coef


def _spd_solve(matrix: np.ndarray, alpha: float, rhs: np.ndarray) -> np.ndarray:
    """Solve (matrix + alpha I) x = rhs by Cholesky; symmetric LU if round-off breaks it."""
    a = matrix.copy()
    a.flat[:: a.shape[0] + 1] += alpha
    try:
        factor = scipy.linalg.cho_factor(a, lower=False, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(factor, rhs, check_finite=False)
    except np.linalg.LinAlgError:
        logger.warning("ridge: Cholesky failed at alpha=%g; using a symmetric solve", alpha)
        a = matrix.copy()
        a.flat[:: a.shape[0] + 1] += alpha
        return scipy.linalg.solve(a, rhs, assume_a="sym", check_finite=False)


def _ridge_search(
    head_name: str, problem: Problem, grid: list[Params]
) -> tuple[list[tuple[Params, float]], GridBest]:
    """Alpha search of Ridge / RidgeClassifier through :func:`ridge_path`."""
    start = time.perf_counter()
    X, X_val = problem.X, problem.X_val
    if problem.kind == "regression":
        Y = problem.y.reshape(len(problem.y), -1)
        weights = None
        binarizer = None
    else:
        binarizer = LabelBinarizer(pos_label=1, neg_label=-1).fit(problem.y)
        Y = binarizer.transform(problem.y).astype(np.float64)  # (n, 1) binary or (n, C)
        weights = problem.sample_weight
    X_val64 = np.asarray(X_val, dtype=np.float64)
    best = GridBest(problem.greater_is_better)
    scores: list[tuple[Params, float]] = []
    alphas = [p["alpha"] for p in grid]
    for params, (alpha, coef, intercept) in zip(
        grid, ridge_path(X, Y, alphas, sample_weight=weights)
    ):
        decision = X_val64 @ coef + intercept  # (m, k)
        if problem.kind == "regression":
            prediction = decision
        elif decision.shape[1] == 1:
            prediction = (decision[:, 0] > 0).astype(np.int64)
        else:
            prediction = decision.argmax(axis=1)
        score = problem.score(prediction)
        scores.append((params, score))
        best.offer(
            params,
            score,
            functools.partial(
                _ridge_estimator, problem, alpha, coef, intercept, binarizer
            ),
        )
        logger.debug("%s %s alpha=%g: val score %.4f", head_name, problem.kind, alpha, score)
    logger.debug("%s: %d alphas in %.1f s", head_name, len(grid), time.perf_counter() - start)
    return scores, best


def _ridge_estimator(
    problem: Problem,
    alpha: float,
    coef: np.ndarray,
    intercept: np.ndarray,
    binarizer: LabelBinarizer | None,
) -> Ridge | RidgeClassifier:
    """A scikit-learn Ridge / RidgeClassifier carrying a solution of :func:`ridge_path`.

    The attributes are those its own ``fit`` sets (tests compare with ``fit``).
    """
    n_features = problem.X.shape[1]
    if binarizer is None:
        model: Ridge | RidgeClassifier = Ridge(alpha=alpha)
        if problem.y.ndim == 1:
            model.coef_ = coef[:, 0].copy()
            model.intercept_ = float(intercept[0])
        else:
            model.coef_ = coef.T.copy()
            model.intercept_ = intercept.copy()
    else:
        model = RidgeClassifier(alpha=alpha, class_weight="balanced")
        # Binary: sklearn's fit stores coef_ as (d,) and intercept_ as (1,).
        model.coef_ = coef[:, 0].copy() if coef.shape[1] == 1 else coef.T.copy()
        model.intercept_ = intercept.copy()
        model.classes_ = binarizer.classes_
        model._label_binarizer = binarizer  # what RidgeClassifier.fit stores for predict
    model.n_features_in_ = n_features
    return model


@register_head
class RidgeHead(ClassicalHead):
    """Ridge regression / RidgeClassifier, alpha chosen on Val along one shared Gram matrix."""

    name = "ridge"
    description = "Ridge / RidgeClassifier (balanced), alpha in logspace(-2, 4, 13)"

    def default_grid(self, kind: str, n_train: int) -> list[Params]:
        return [{"alpha": a} for a in RIDGE_ALPHAS]

    def grid_keys(self, kind: str) -> frozenset[str]:
        return frozenset({"alpha"})

    def required_keys(self, kind: str) -> frozenset[str]:
        return frozenset({"alpha"})

    def build(self, kind: str, params: Params, problem: Problem) -> Any:
        if kind == "regression":
            return Ridge(alpha=params["alpha"])
        return RidgeClassifier(alpha=params["alpha"], class_weight="balanced")

    def search(self, problem: Problem, grid: list[Params]) -> SearchResult:
        return _ridge_search(self.name, problem, grid)


@register_head
class LogRegHead(ClassicalHead):
    """LogisticRegression (balanced) for classes; Ridge for regression targets."""

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
            return _ridge_search(self.name, problem, grid)
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


class _SVMHead(ClassicalHead):
    """SVR / SVC, or LinearSVR / LinearSVC above SVM_KERNEL_MAX_ROWS training rows."""

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
class SVRHead(_SVMHead):
    """Support-vector head (same family as ``svc``)."""

    name = "svr"
    description = "SVR / SVC (balanced), C in [0.01, 0.1, 1, 10]; linear above 10,000 rows"


@register_head
class SVCHead(_SVMHead):
    """Support-vector head (same family as ``svr``)."""

    name = "svc"
    description = "SVC (balanced) / SVR, C in [0.01, 0.1, 1, 10]; linear above 10,000 rows"


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


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _check_features(X: Any, name: str) -> np.ndarray:  # noqa: N803
    """2-D float features with no NaN / Inf rows (float16 and ints become float32 / 64)."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (rows, features) array, got shape {arr.shape}")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind != "f":
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} has {rows.size} row(s) with NaN or infinite features (first rows: "
            f"{rows[:5].tolist()}); check the feature set (a broken extraction or a float16 "
            "overflow) and drop or re-extract those clips"
        )
    return arr


def _check_targets(y: Any, kind: str, name: str, n_rows: int) -> np.ndarray:
    """Regression: float64 (n,) / (n, k); classification: int64 (n,) codes. No NaN rows."""
    arr = np.asarray(y)
    if arr.shape[:1] != (n_rows,):
        raise ValueError(
            f"{name} must have {n_rows} rows (as its features), got shape {arr.shape}"
        )
    if kind == "classification" and arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class codes, got shape {arr.shape}")
    if kind == "regression" and arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D (rows, columns), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be numeric "
            f"({'integer class codes' if kind == 'classification' else 'floats'}), "
            f"got dtype {arr.dtype}"
        )
    arr = arr.astype(np.float64) if kind == "regression" or arr.dtype.kind == "f" else arr
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr).reshape(n_rows, -1).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{name} has {rows.size} row(s) with NaN or infinite labels (first rows: "
                f"{rows[:5].tolist()}); exclude unlabelled rows (e.g. Test, missing "
                "annotations) before fit_select"
            )
    if kind == "classification":
        if arr.dtype.kind == "f":
            if not np.all(arr == np.round(arr)):
                raise ValueError(f"{name} must be integer class codes, got non-integer values")
        arr = arr.astype(np.int64)
    return arr


def _resolve_grid(
    head: ClassicalHead, kind: str, grid: GridSpec | None, n_train: int
) -> list[Params]:
    """The default grid, or ``grid`` (a list of dicts or a dict of lists) checked for keys."""
    if grid is None:
        return head.default_grid(kind, n_train)
    if isinstance(grid, Mapping):
        entries = list(ParameterGrid(dict(grid)))
    else:
        entries = [dict(g) for g in grid]
    if not entries:
        raise ValueError(f"grid for head {head.name!r} is empty")
    allowed = head.grid_keys(kind)
    for entry in entries:
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(
                f"grid keys {sorted(unknown)} are not valid for head {head.name!r} ({kind}); "
                f"allowed: {sorted(allowed)}"
            )
        missing = head.required_keys(kind) - set(entry)
        if missing:
            raise ValueError(f"grid entry {entry} of head {head.name!r} lacks {sorted(missing)}")
    return entries


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------


def fit_select(
    head: str,
    kind: str,
    X_train: np.ndarray,  # noqa: N803
    y_train: np.ndarray,
    X_val: np.ndarray,  # noqa: N803
    y_val: np.ndarray,
    *,
    score_fn: ScoreFn,
    greater_is_better: bool = True,
    seed: int = 0,
    n_jobs: int = 1,
    grid: GridSpec | None = None,
) -> FitSelection:
    """Fit a classical head on Train for each grid entry and keep the best on Val.

    The ``StandardScaler`` is fitted on Train only. The returned model is the one fitted on
    Train (no refit on Train + Val), so ``val_score`` is its honest score on Val.

    Args:
        head: a name in :func:`classical_heads` (``ridge``, ``logreg``, ``svr``, ``svc``,
            ``xgb``).
        kind: ``"regression"`` or ``"classification"``.
        X_train: Train features, (n, d).
        y_train: Train targets: (n,) or (n, k) floats, or (n,) integer class codes.
        X_val: Val features, (m, d).
        y_val: Val targets, like ``y_train``.
        score_fn: ``score_fn(y_val, prediction) -> float``, e.g. ``metrics.mean_ccc_score``,
            ``metrics.uar`` or a negative MAE.
        greater_is_better: ``False`` for errors such as ``metrics.mae``.
        seed: random seed of the estimators (xgb, linear SVMs).
        n_jobs: parallel jobs (xgb threads, one SVR per column).
        grid: replaces the default grid: a list of param dicts, or a dict of lists (every
            combination). Keys per head: :meth:`ClassicalHead.grid_keys`.

    Returns:
        The :class:`FitSelection`.

    Raises:
        ValueError: for an unknown head or kind, shapes that do not match, rows with NaN
            labels or NaN / infinite features, fewer than 2 classes in ``y_train``, an empty
            grid or unknown grid keys.
    """
    known = classical_heads()
    if head not in known:
        raise ValueError(f"head must be one of {sorted(known)}, got {head!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    head_obj = known[head]
    X_tr = _check_features(X_train, "X_train")
    X_va = _check_features(X_val, "X_val")
    if X_tr.shape[1] != X_va.shape[1]:
        raise ValueError(
            f"X_train and X_val must have the same feature columns, got {X_tr.shape[1]} and "
            f"{X_va.shape[1]}"
        )
    y_tr = _check_targets(y_train, kind, "y_train", X_tr.shape[0])
    y_va = _check_targets(y_val, kind, "y_val", X_va.shape[0])
    if y_tr.shape[1:] != y_va.shape[1:]:
        raise ValueError(
            f"y_train and y_val must have the same columns, got shapes {y_tr.shape} and "
            f"{y_va.shape}"
        )
    grid_list = _resolve_grid(head_obj, kind, grid, X_tr.shape[0])

    scaler = StandardScaler().fit(X_tr)
    problem = Problem(
        kind=kind,
        X=scaler.transform(X_tr),
        y=y_tr,
        X_val=scaler.transform(X_va),
        y_val=y_va,
        score_fn=score_fn,
        greater_is_better=greater_is_better,
        seed=seed,
        n_jobs=n_jobs,
    )
    classes = None
    if kind == "classification":
        classes, index, counts = np.unique(y_tr, return_inverse=True, return_counts=True)
        if classes.size < 2:
            raise ValueError(f"y_train must hold at least 2 classes, got {classes.tolist()}")
        pos = np.clip(np.searchsorted(classes, y_va), 0, classes.size - 1)
        val_index = np.where(classes[pos] == y_va, pos, -1)
        unseen = int((val_index < 0).sum())
        if unseen:
            logger.warning(
                "%d Val row(s) have classes absent from Train (%s); no model can predict them",
                unseen, sorted(set(y_va[val_index < 0].tolist())),
            )
        class_weight = len(y_tr) / (classes.size * counts)  # sklearn's "balanced"
        problem.y = index.astype(np.int64)
        problem.y_val_index = val_index
        problem.classes = classes
        problem.class_weight = class_weight
        problem.sample_weight = class_weight[index]

    start = time.perf_counter()
    grid_scores, best = head_obj.search(problem, grid_list)
    assert best.params is not None
    if np.isnan(best.score):
        logger.warning("%s: every grid entry scored nan on Val; keeping the first", head)
    logger.info(
        "%s %s: chose %s, val score %.4f (%d grid entries, %.1f s)",
        head, kind, best.params, best.score, len(grid_list), time.perf_counter() - start,
    )
    return FitSelection(
        model=Pipeline([("scale", scaler), ("model", best.model)]),
        params=best.params,
        val_score=best.score,
        grid_scores=grid_scores,
        head=head,
        kind=kind,
        classes=classes,
        n_outputs=y_tr.shape[1] if kind == "regression" and y_tr.ndim == 2 else None,
    )
