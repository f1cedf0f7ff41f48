"""Tests of heads/classical: every classical head x kind, THE ridge solver, input checks."""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.preprocessing import StandardScaler

from heads.classical import (
    classical_heads,
    KINDS,
    RIDGE_ALPHAS,
    FitSelection,
    RidgeSolver,
    fit_select,
    xgb_device,
)
from heads.scoring import mae_error, mean_ccc, mean_ccc_score, uar_score

# xgb's default grid (up to 500 trees x 4) is slow on a 2-core CI machine; the contract is
# the same with fewer trees.
FAST_GRIDS: dict[str, dict[str, list[Any]]] = {
    "xgb": {"max_depth": [2, 3], "n_estimators": [60]},
}


def _linear_data(
    seed: int, *, n: int = 300, n_val: int = 200, d: int = 8, k: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features with offsets and scales (standardisation matters) and a linear target."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.1, 10.0, d)
    offset = rng.uniform(-5.0, 5.0, d)
    X = rng.standard_normal((n, d)) * scale + offset
    X_val = rng.standard_normal((n_val, d)) * scale + offset
    weights = rng.standard_normal((d, k or 1)) / scale[:, None]
    y = X @ weights + 0.3 * rng.standard_normal((n, k or 1))
    y_val = X_val @ weights + 0.3 * rng.standard_normal((n_val, k or 1))
    if k is None:
        y, y_val = y[:, 0], y_val[:, 0]
    return X, y, X_val, y_val


def _class_data(
    seed: int, *, n: int = 300, n_val: int = 200, d: int = 8, codes: tuple[int, ...] = (0, 1, 2)
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Classes from the argmax of linear scores; class frequencies unequal."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((d, len(codes)))
    bias = np.linspace(0.0, -1.0, len(codes))  # later classes rarer
    X = rng.standard_normal((n, d))
    X_val = rng.standard_normal((n_val, d))
    y = np.asarray(codes)[(X @ W + bias).argmax(axis=1)]
    y_val = np.asarray(codes)[(X_val @ W + bias).argmax(axis=1)]
    return X, y, X_val, y_val


def _fit(head: str, kind: str, data: tuple[np.ndarray, ...], **kwargs: Any) -> FitSelection:
    score_fn = mean_ccc_score if kind == "regression" else uar_score
    kwargs.setdefault("grid", FAST_GRIDS.get(head))
    return fit_select(head, kind, *data, score_fn=score_fn, **kwargs)


# ---------------------------------------------------------------------------------- contract


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", sorted(classical_heads()))
def test_head_contract_learns_above_chance(head: str, kind: str) -> None:
    data = _linear_data(0) if kind == "regression" else _class_data(0)
    X, y, X_val, y_val = data
    selection = _fit(head, kind, data)

    assert selection.head == head and selection.kind == kind
    grid = FAST_GRIDS.get(head)
    n_grid = len(classical_heads()[head].default_grid(kind, len(y))) if grid is None else 2
    assert len(selection.grid_scores) == n_grid
    assert selection.params in [params for params, _ in selection.grid_scores]
    assert selection.val_score == max(score for _, score in selection.grid_scores)

    prediction = selection.predict(X_val)
    assert prediction.shape == y_val.shape
    # The reported score is the returned model's score on Val (nothing refitted on Val).
    score_fn = mean_ccc_score if kind == "regression" else uar_score
    assert score_fn(y_val, prediction) == pytest.approx(selection.val_score, abs=1e-9)
    # The scaler saw Train only.
    np.testing.assert_allclose(selection.model.named_steps["scale"].mean_, X.mean(axis=0))
    if kind == "regression":
        assert prediction.dtype == np.float64
        assert selection.val_score > 0.8
    else:
        assert set(np.unique(prediction)) <= set(np.unique(y))
        assert selection.val_score > 0.6  # chance: 1/3


@pytest.mark.parametrize("head", sorted(classical_heads()))
def test_head_multi_column_regression(head: str) -> None:
    X, y, X_val, y_val = _linear_data(1, k=3)
    selection = _fit(head, "regression", (X, y, X_val, y_val))
    prediction = selection.predict(X_val)
    assert prediction.shape == (len(y_val), 3) and selection.n_outputs == 3
    assert min(mean_ccc(y_val, prediction)[1]) > 0.7


@pytest.mark.parametrize("head", sorted(classical_heads()))
def test_head_keeps_original_class_codes(head: str) -> None:
    X, y, X_val, y_val = _class_data(2, codes=(3, 7, 9))
    selection = _fit(head, "classification", (X, y, X_val, y_val))
    np.testing.assert_array_equal(selection.classes, [3, 7, 9])
    assert set(np.unique(selection.predict(X_val))) <= {3, 7, 9}
    assert selection.val_score > 0.6


@pytest.mark.parametrize("head", ["xgb", "svc", "logreg"])
def test_fit_select_is_deterministic(head: str) -> None:
    data = _class_data(3)
    grid = FAST_GRIDS.get(head)
    if head == "logreg":
        grid = {"C": [0.01, 1.0]}
    if head == "svc":
        grid = {"C": [0.1, 1.0], "kernel": ["linear"]}  # LinearSVC takes the seed
    a = _fit(head, "classification", data, seed=4, grid=grid)
    b = _fit(head, "classification", data, seed=4, grid=grid)
    assert a.params == b.params and a.grid_scores == b.grid_scores
    np.testing.assert_array_equal(a.predict(data[2]), b.predict(data[2]))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_svm_switches_to_linear_above_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import heads.classical.svm as svm

    monkeypatch.setattr(svm, "SVM_KERNEL_MAX_ROWS", 100)
    head = classical_heads()["svr"]
    assert {p["kernel"] for p in head.default_grid("regression", 300)} == {"linear"}
    assert {p["kernel"] for p in head.default_grid("regression", 100)} == {"rbf"}
    selection = _fit("svr", "regression", _linear_data(4))
    assert selection.params["kernel"] == "linear" and selection.val_score > 0.8


# ------------------------------------------------------------------------------------- ridge


@pytest.mark.parametrize(("n", "d"), [(120, 15), (40, 90)])  # primal and dual paths
@pytest.mark.parametrize("weighted", [False, True])
def test_ridge_path_equals_sklearn(n: int, d: int, weighted: bool) -> None:
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((n, d)) + 3.0
    Y = rng.standard_normal((n, 2))
    weights = rng.uniform(0.2, 3.0, n) if weighted else None
    alphas = [0.1, 10.0, 1000.0]
    solver = RidgeSolver(X, weights)
    for expected_alpha in alphas:
        coef, intercept = solver.solve(Y, expected_alpha)
        reference = Ridge(alpha=expected_alpha).fit(X, Y, sample_weight=weights)
        np.testing.assert_allclose(coef.T, reference.coef_, atol=1e-10)
        np.testing.assert_allclose(intercept, reference.intercept_, atol=1e-10)


@pytest.mark.parametrize("n,d", [(60, 8), (10, 25)])  # primal and dual forms
@pytest.mark.parametrize("weighted", [False, True])
def test_ridge_solver_path_and_solve_equal_sklearn(n, d, weighted):
    """The eigendecomposition path (the probe) and the Cholesky solve (a refit) of one solver."""
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((n, d))
    Y = X @ rng.standard_normal((d, 3)) + rng.standard_normal((n, 3))
    w = rng.integers(1, 4, n).astype(float) if weighted else None
    alphas = [0.1, 1.0, 30.0]
    solver = RidgeSolver(X, w)
    coefs, intercepts = solver.path(Y, alphas)
    for a, coef, icpt in zip(alphas, coefs, intercepts):
        ref = Ridge(alpha=a).fit(X, Y, sample_weight=w)
        np.testing.assert_allclose(coef, ref.coef_.T, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(icpt, ref.intercept_, rtol=1e-6, atol=1e-8)
        c2, i2 = RidgeSolver(X, np.ones(n) if w is None else w).solve(Y, a)
        np.testing.assert_allclose(c2, ref.coef_.T, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(i2, ref.intercept_, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("codes", [(0, 1), (0, 1, 2, 3)])
@pytest.mark.parametrize("n", [200, 30])  # more rows than features, and fewer
def test_ridge_classifier_equals_sklearn_fit(codes: tuple[int, ...], n: int) -> None:
    X, y, X_val, y_val = _class_data(5, n=n, d=40, codes=codes)
    selection = fit_select(
        "ridge", "classification", X, y, X_val, y_val, score_fn=uar_score, grid=[{"alpha": 3.0}]
    )
    scaler = StandardScaler().fit(X)
    reference = RidgeClassifier(alpha=3.0, class_weight="balanced").fit(scaler.transform(X), y)
    model = selection.model.named_steps["model"]
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-10)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, atol=1e-10)
    np.testing.assert_array_equal(
        selection.predict(X_val), reference.predict(scaler.transform(X_val))
    )


def test_ridge_regression_equals_sklearn_fit() -> None:
    X, y, X_val, y_val = _linear_data(6, k=3)
    selection = fit_select(
        "ridge", "regression", X, y, X_val, y_val, score_fn=mean_ccc_score, grid={"alpha": [5.0]}
    )
    scaler = StandardScaler().fit(X)
    reference = Ridge(alpha=5.0).fit(scaler.transform(X), y)
    np.testing.assert_allclose(
        selection.predict(X_val), reference.predict(scaler.transform(X_val)), atol=1e-10
    )


@pytest.mark.parametrize("greater_is_better", [True, False])
def test_selection_picks_the_alpha_val_prefers(greater_is_better: bool) -> None:
    # Val targets are exactly what the alpha* model predicts, so only alpha* scores perfectly.
    X, y, X_val, _ = _linear_data(7, d=30)
    alpha_star = RIDGE_ALPHAS[8]  # 100.0, far from the grid's best fit to the noisy target
    scaler = StandardScaler().fit(X)
    y_val = Ridge(alpha=alpha_star).fit(scaler.transform(X), y).predict(scaler.transform(X_val))

    def mse(t: np.ndarray, p: np.ndarray) -> float:
        return float(np.mean((t - p) ** 2))

    def neg_mse(t: np.ndarray, p: np.ndarray) -> float:
        return -mse(t, p)

    selection = fit_select(
        "ridge", "regression", X, y, X_val, y_val,
        score_fn=neg_mse if greater_is_better else mse,
        greater_is_better=greater_is_better,
    )
    assert selection.params == {"alpha": alpha_star}
    assert selection.val_score == pytest.approx(0.0, abs=1e-18)
    assert len(selection.grid_scores) == len(RIDGE_ALPHAS)


def test_logreg_regression_uses_ridge() -> None:
    data = _linear_data(8)
    a = fit_select("logreg", "regression", *data, score_fn=mae_error, greater_is_better=False)
    b = fit_select("ridge", "regression", *data, score_fn=mae_error, greater_is_better=False)
    assert a.params == b.params and "alpha" in a.params
    assert a.val_score == pytest.approx(b.val_score)
    assert a.val_score == min(score for _, score in a.grid_scores)


# ------------------------------------------------------------------------------ input checks


def test_nan_labels_are_refused() -> None:
    X, y, X_val, y_val = _linear_data(9)
    y = y.copy()
    y[[4, 17]] = np.nan
    with pytest.raises(ValueError, match=r"y_train has 2 row\(s\) with NaN .*\[4, 17\].*exclude"):
        fit_select("ridge", "regression", X, y, X_val, y_val, score_fn=mean_ccc_score)
    Xc, yc, Xc_val, yc_val = _class_data(9)
    yc_val = yc_val.astype(float)
    yc_val[0] = np.nan
    with pytest.raises(ValueError, match=r"y_val has 1 row\(s\) with NaN"):
        fit_select("logreg", "classification", Xc, yc, Xc_val, yc_val, score_fn=uar_score)


def test_nan_features_are_refused() -> None:
    X, y, X_val, y_val = _linear_data(10)
    X_val = X_val.copy()
    X_val[[1, 2, 3], 0] = np.inf
    X_val[5, 4] = np.nan
    message = r"X_val has 4 row\(s\) with NaN or infinite .*check the feature set"
    with pytest.raises(ValueError, match=message):
        fit_select("ridge", "regression", X, y, X_val, y_val, score_fn=mean_ccc_score)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"head": "lasso"}, re.escape(f"one of {sorted(classical_heads())}, got 'lasso'")),
        ({"kind": "ordinal"}, re.escape(f"kind must be one of {KINDS}, got 'ordinal'")),
        ({"grid": [{"alpha": 1.0, "C": 2.0}]}, r"\['C'\] are not valid .*allowed: \['alpha'\]"),
        ({"grid": []}, "empty"),
    ],
)
def test_argument_errors_name_allowed_values(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"head": "ridge", "kind": "regression"}
    arguments.update(kwargs)
    X, y, X_val, y_val = _linear_data(11)
    with pytest.raises(ValueError, match=message):
        fit_select(
            arguments.pop("head"), arguments.pop("kind"), X, y, X_val, y_val,
            score_fn=mean_ccc_score, **arguments,
        )


def test_classification_checks() -> None:
    X, y, X_val, y_val = _class_data(12)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_select("svc", "classification", X, np.zeros_like(y), X_val, y_val, score_fn=uar_score)
    with pytest.raises(ValueError, match="integer class codes"):
        fit_select("svc", "classification", X, y + 0.5, X_val, y_val, score_fn=uar_score)


def test_val_class_absent_from_train() -> None:
    X, y, X_val, y_val = _class_data(13)
    y_val = y_val.copy()
    y_val[:5] = 42
    selection = _fit("xgb", "classification", (X, y, X_val, y_val))
    assert 42 not in selection.predict(X_val)


# --------------------------------------------------------------------------------------- GPU


def test_xgb_device_follows_torch() -> None:
    torch = pytest.importorskip("torch")
    assert xgb_device() == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.gpu
def test_xgb_on_gpu() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    selection = _fit("xgb", "regression", _linear_data(14, n=2000, n_val=500))
    assert selection.model.named_steps["model"].get_params()["device"] == "cuda"
    assert selection.val_score > 0.8
