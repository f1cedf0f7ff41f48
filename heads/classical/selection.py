"""The classical heads' protocol: input checks, the search on Val, :func:`fit_select`.

Features are standardised on Train only; each grid entry is fitted on Train and scored on Val;
the best model is returned as fitted on Train (see :mod:`heads.classical` for the grids and
the protocol in full). :class:`ClassicalHead` is the base every head module subclasses.
"""
from __future__ import annotations

import abc
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from data.tasks import Task
from heads.base import HEADS, FitOptions, FitResult, VectorHead
from heads.classical.checks import check_features, check_targets
from heads.dataset import Dataset, labelled
from heads.rundir import jsonable
from heads.saved_model import save_classical
from heads.scoring import mae_error, mean_ccc_score, uar_score

logger = logging.getLogger(__name__)

KINDS = ("regression", "classification")
"""Target kinds every head supports."""

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
        clip: regression: the label range predictions are clipped to (``None``: not clipped);
            ``val_score`` and every grid score were computed on clipped predictions.
    """

    model: Pipeline
    params: Params
    val_score: float
    grid_scores: list[tuple[Params, float]]
    head: str
    kind: str
    classes: np.ndarray | None = None
    n_outputs: int | None = None
    clip: tuple[float, float] | None = None

    def predict(self, X: np.ndarray, *, raw: bool = False) -> np.ndarray:  # noqa: N803
        """Predict regression values (clipped to :attr:`clip`) or class codes.

        Args:
            X: features, shape (n, d), same columns as in training.
            raw: regression: the model's values before clipping.

        Returns:
            Regression: shape (n,) or (n, k) like ``y_train``. Classification: (n,) class
            codes from ``classes``.

        Raises:
            ValueError: for rows with NaN / infinite features or a wrong feature count.
        """
        X = check_features(X, "X")
        expected = self.model.named_steps["scale"].n_features_in_
        if X.shape[1] != expected:
            raise ValueError(f"X must have {expected} feature columns, got {X.shape[1]}")
        out = np.asarray(self.model.predict(X))
        if self.kind == "classification":
            assert self.classes is not None
            return self.classes[out.astype(np.int64)]
        out = out.astype(np.float64)  # xgb predicts float32
        if self.clip is not None and not raw:
            out = np.clip(out, *self.clip)
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
    clip: tuple[float, float] | None = None

    def score(self, prediction: np.ndarray) -> float:
        """Score a prediction on Val (class indices for classification)."""
        prediction = np.asarray(prediction)
        if self.kind == "classification":
            assert self.classes is not None
            prediction = self.classes[prediction.astype(np.int64).reshape(-1)]
        else:
            prediction = prediction.reshape(self.y_val.shape)
            if self.clip is not None:  # score what is reported: the clipped prediction
                prediction = np.clip(prediction, *self.clip)
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


def clipping_record(ds: Dataset, raw: np.ndarray, clip: tuple[float, float]) -> dict[str, Any]:
    """How many predicted values of each split lie outside ``clip`` (and are clipped to it).

    Returns:
        ``{"range": [low, high], "clipped": {split: n}, "values": {split: n}}`` over every
        value (rows x columns) of each split.
    """
    outside = (raw < clip[0]) | (raw > clip[1])
    splits = ("Train", "Val", "Test")
    return {"range": [float(clip[0]), float(clip[1])],
            "clipped": {s: int(outside[ds.rows(s)].sum()) for s in splits},
            "values": {s: int(outside[ds.rows(s)].size) for s in splits}}


class ClassicalHead(VectorHead, abc.ABC):
    """One head family. Subclasses set ``name`` / ``description`` and build estimators.

    As a :class:`heads.base.Head`, it fits one model per target of every task (one task at a
    time, :meth:`fit`), selecting its grid entry on Val.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    family: ClassVar[str] = "classical"
    seeded: ClassVar[bool] = True
    """Whether the seed changes the fit; ``False`` for the deterministic heads (ridge, logreg,
    svm), which refuse ``--seeds N > 1``."""

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
                score_fn, greater = uar_score, True
            elif tg.metric == "mae":
                score_fn, greater = mae_error, False
            else:
                score_fn, greater = mean_ccc_score, True
            clip = tg.value_range if tg.kind == "regression" else None  # labels' known range
            sel = fit_select(self.name, tg.kind, ds.X[ok_tr], y[ok_tr], ds.X[ok_va], y[ok_va],
                             score_fn=score_fn, greater_is_better=greater, seed=seed,
                             n_jobs=n_jobs, clip=clip)
            save_classical(out_dir, task.name, tg.name, seed, sel)  # the run keeps its model
            p = sel.predict(ds.X, raw=True)
            params[tg.name] = {"params": jsonable(sel.params),
                               "val_score_selection": float(sel.val_score)}
            if tg.kind == "regression":
                p = np.asarray(p, dtype=np.float32).reshape(len(ds.ids), -1)
                if clip is not None:
                    params[tg.name]["clipping"] = clipping_record(ds, p, clip)
                    p = np.clip(p, *clip)
            preds[tg.name] = np.asarray(p)
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
# the grid
# --------------------------------------------------------------------------------------------


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
    clip: tuple[float, float] | None = None,
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
        score_fn: ``score_fn(y_val, prediction) -> float``, e.g. ``heads.scoring.mean_ccc_score``,
            ``heads.scoring.uar_score`` or ``heads.scoring.mae_error``.
        greater_is_better: ``False`` for errors such as ``heads.scoring.mae_error``.
        seed: random seed of the estimators (xgb, linear SVMs).
        n_jobs: parallel jobs (xgb threads, one SVR per column).
        grid: replaces the default grid: a list of param dicts, or a dict of lists (every
            combination). Keys per head: :meth:`ClassicalHead.grid_keys`.
        clip: regression only: ``(low, high)``, the labels' known range. Every grid entry is
            then scored on its predictions clipped to it, the predictions that are reported,
            and :meth:`FitSelection.predict` clips. (XGBoost's early stopping still watches its
            own loss on the raw values.)

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
    if clip is not None:
        if kind != "regression":
            raise ValueError(f"clip applies to regression only, got kind {kind!r}")
        low, high = (float(v) for v in clip)
        if not low < high:
            raise ValueError(f"clip must be (low, high) with low < high, got {clip!r}")
        clip = (low, high)
    X_tr = check_features(X_train, "X_train")
    X_va = check_features(X_val, "X_val")
    if X_tr.shape[1] != X_va.shape[1]:
        raise ValueError(
            f"X_train and X_val must have the same feature columns, got {X_tr.shape[1]} and "
            f"{X_va.shape[1]}"
        )
    y_tr = check_targets(y_train, kind, "y_train", X_tr.shape[0])
    y_va = check_targets(y_val, kind, "y_val", X_va.shape[0])
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
        clip=clip,
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
        clip=clip,
    )
