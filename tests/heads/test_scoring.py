"""Tests of heads/scoring (regression, classification, bootstrap, registry) against audmetric,
scikit-learn and textbook formulas."""
from __future__ import annotations

import math
import statistics
import time

import audmetric
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, mean_absolute_error, recall_score

from heads import scoring as metrics
from heads.scoring import (
    METRIC_TARGETS,
    METRICS,
    bootstrap_ci,
    ccc_organisers_score as ccc_organisers,
    ccc_score as ccc,
    confusion,
    exvo_score,
    mae_error as mae,
    mean_ccc,
    mean_ccc_organisers_score,
    mean_ccc_score,
    uar_score as uar,
)

SEEDS = [0, 1, 2, 3]
SIZES = [2, 3, 17, 250, 3000]


def _pair(seed: int, n: int, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Truth in [0, 1] and a noisy, biased, rescaled prediction of it."""
    rng = np.random.default_rng(seed)
    shape = (n,) if k is None else (n, k)
    truth = rng.random(shape)
    pred = 0.7 * truth + 0.1 + rng.normal(0.0, 0.2, shape)
    return truth, pred


def _labels(seed: int, n: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n)
    # Mostly right, sometimes a random class, including one that never occurs in truth.
    noise = rng.integers(0, n_classes + 1, n)
    pred = np.where(rng.random(n) < 0.6, truth, noise)
    return truth, pred


def _naive_organisers(t: list[float], p: list[float]) -> float:
    """The organisers' formula written out: 1/(n-1) variances, 1/n covariance, 4 decimals."""
    n = len(t)
    mt = sum(t) / n
    mp = sum(p) / n
    var_t = sum((x - mt) ** 2 for x in t) / (n - 1)
    var_p = sum((y - mp) ** 2 for y in p) / (n - 1)
    cov = sum((x - mt) * (y - mp) for x, y in zip(t, p)) / n
    return round(2 * cov / (var_t + var_p + (mt - mp) ** 2), 4)


# ------------------------------------------------------------------------------------- CCC


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_ccc_equals_audmetric(seed: int, n: int) -> None:
    truth, pred = _pair(seed, n)
    assert ccc(truth, pred) == pytest.approx(
        audmetric.concordance_cc(truth, pred), rel=1e-12, abs=1e-12
    )
    # Lists work as well as arrays.
    assert ccc(truth.tolist(), pred.tolist()) == pytest.approx(ccc(truth, pred), abs=1e-15)


def test_ccc_textbook_and_perfect() -> None:
    truth, pred = _pair(7, 500)
    # Lin (1989) written with np.var / np.cov(bias=True): population moments.
    cov = np.cov(truth, pred, bias=True)[0, 1]
    lin = 2 * cov / (np.var(truth) + np.var(pred) + (truth.mean() - pred.mean()) ** 2)
    assert ccc(truth, pred) == pytest.approx(lin, rel=1e-12)
    assert ccc(truth, truth) == pytest.approx(1.0)
    assert ccc(truth, -truth) < 0


@pytest.mark.parametrize(
    ("truth", "pred", "expected"),
    [
        ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], math.nan),  # both constant and equal: 0 / 0
        ([0.5, 0.5, 0.5], [0.1, 0.4, 0.9], 0.0),  # one constant: no covariance
        ([0.5, 0.5, 0.5], [0.2, 0.2, 0.2], 0.0),  # constant and different
        ([0.3], [0.7], math.nan),  # a single sample
    ],
)
def test_ccc_edge_cases_follow_audmetric(
    truth: list[float], pred: list[float], expected: float
) -> None:
    reference = audmetric.concordance_cc(truth, pred)
    for value in (ccc(truth, pred), reference):
        if math.isnan(expected):
            assert math.isnan(value)
        else:
            assert value == pytest.approx(expected)


def test_ccc_rejects_nan_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"y_pred contains 1 NaN .*drop those rows"):
        ccc([0.1, 0.2, 0.3], [0.1, float("nan"), 0.3])
    with pytest.raises(ValueError, match=r"y_true contains 0 NaN and 1 infinite"):
        ccc([0.1, float("inf"), 0.3], [0.1, 0.2, 0.3])


def test_ccc_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"same shape, got \(3,\) and \(2,\)"):
        ccc([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="use mean_ccc"):
        ccc(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        ccc([], [])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_ccc_organisers_equals_naive_formula(seed: int, n: int) -> None:
    truth, pred = _pair(seed, n)
    assert ccc_organisers(truth, pred) == pytest.approx(
        _naive_organisers(truth.tolist(), pred.tolist()), abs=1e-12
    )


def test_ccc_organisers_is_slightly_lower() -> None:
    truth, pred = _pair(3, 200)
    value = ccc_organisers(truth, pred)
    assert value < ccc(truth, pred)
    assert value == round(value, 4)
    assert ccc_organisers([0.2, 0.2], [0.2, 0.2]) != ccc_organisers([0.2, 0.2], [0.2, 0.2])  # nan


@pytest.mark.parametrize("seed", SEEDS)
def test_mean_ccc_is_mean_of_columns(seed: int) -> None:
    truth, pred = _pair(seed, 300, k=10)
    mean, per_column = mean_ccc(truth, pred)
    expected = [audmetric.concordance_cc(truth[:, j], pred[:, j]) for j in range(10)]
    assert per_column == pytest.approx(expected, rel=1e-12)
    assert mean == pytest.approx(np.mean(expected), rel=1e-12)
    assert mean_ccc_score(truth, pred) == mean
    org_mean, org_columns = mean_ccc(truth, pred, variant="organisers")
    assert org_columns == [
        _naive_organisers(truth[:, j].tolist(), pred[:, j].tolist()) for j in range(10)
    ]
    assert mean_ccc_organisers_score(truth, pred) == org_mean
    # A 1-D input is one column.
    one_mean, one_column = mean_ccc(truth[:, 0], pred[:, 0])
    assert one_column == pytest.approx([per_column[0]], rel=1e-12)
    assert one_mean == pytest.approx(per_column[0], rel=1e-12)


def test_mean_ccc_rejects_unknown_variant() -> None:
    with pytest.raises(ValueError, match=r"variant must be one of \('population', 'organisers'\)"):
        mean_ccc([0.0, 1.0], [0.0, 1.0], variant="unbiased")


# ------------------------------------------------------------------------------- UAR / MAE


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 5, 100, 2000])
@pytest.mark.parametrize("n_classes", [2, 4, 8])
def test_uar_equals_sklearn_and_audmetric(seed: int, n: int, n_classes: int) -> None:
    truth, pred = _labels(seed, n, n_classes)
    expected = recall_score(truth, pred, average="macro", zero_division=0)
    assert uar(truth, pred) == pytest.approx(expected, abs=1e-12)
    assert uar(truth, pred) == pytest.approx(
        audmetric.unweighted_average_recall(truth, pred), abs=1e-12
    )


def test_uar_with_labels_and_strings() -> None:
    truth, pred = _labels(5, 300, 4)
    labels = [0, 1, 2, 3]
    assert uar(truth, pred, labels=labels) == pytest.approx(
        recall_score(truth, pred, labels=labels, average="macro", zero_division=0)
    )
    names = np.array(["China", "South Africa", "United States", "Venezuela", "Other"])
    assert uar(names[truth], names[pred]) == pytest.approx(uar(truth, pred))
    assert uar([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0


def test_uar_rejects_nan_and_mismatch() -> None:
    with pytest.raises(ValueError, match="NaN label"):
        uar([0.0, float("nan")], [0.0, 1.0])
    with pytest.raises(ValueError, match="same length, got 3 and 2"):
        uar([0, 1, 1], [0, 1])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_mae_equals_audmetric_and_sklearn(seed: int, n: int) -> None:
    truth, pred = _pair(seed, n)
    assert mae(truth, pred) == pytest.approx(
        audmetric.mean_absolute_error(truth, pred), rel=1e-12
    )
    truth2, pred2 = _pair(seed, n, k=3)
    assert mae(truth2, pred2) == pytest.approx(mean_absolute_error(truth2, pred2), rel=1e-12)


def test_confusion_equals_sklearn() -> None:
    truth, pred = _labels(2, 500, 5)
    for labels in ([0, 1, 2, 3, 4, 5], [4, 2, 0], [3, 1]):
        np.testing.assert_array_equal(
            confusion(truth, pred, labels), confusion_matrix(truth, pred, labels=labels)
        )
    with pytest.raises(ValueError, match="unique"):
        confusion(truth, pred, [0, 0, 1])


# ------------------------------------------------------------------------------------ ExVo


def test_exvo_check_value() -> None:
    assert round(exvo_score(0.4900, 0.5010, 3.9952), 4) == 0.3735
    # The harmonic mean written out.
    for c, u, m in [(0.49, 0.501, 3.9952), (0.416, 0.506, 4.222), (0.9, 0.1, 0.5)]:
        assert exvo_score(c, u, m) == pytest.approx(statistics.harmonic_mean([c, u, 1 / m]))


def test_exvo_non_positive_components() -> None:
    assert exvo_score(0.0, 0.5, 4.0) == 0.0
    assert exvo_score(-0.2, 0.5, 4.0) == 0.0
    assert exvo_score(0.5, 0.0, 4.0) == 0.0
    assert exvo_score(0.5, 0.5, 0.0) == pytest.approx(0.75)  # 1/MAE -> inf: 3 / (2 + 2)
    with pytest.raises(ValueError, match="mae must be >= 0"):
        exvo_score(0.5, 0.5, -1.0)
    with pytest.raises(ValueError, match="ccc must be a finite number"):
        exvo_score(float("nan"), 0.5, 4.0)


# ------------------------------------------------------------------------------- bootstrap

FAST_PATH = [ccc, ccc_organisers, mean_ccc_score, mean_ccc_organisers_score, mae, uar]


@pytest.mark.parametrize("fn", FAST_PATH, ids=lambda f: f.__name__)
@pytest.mark.parametrize("seed", [0, 1])
def test_bootstrap_vectorised_equals_loop(fn, seed: int) -> None:  # noqa: ANN001
    if fn is uar:
        truth, pred = _labels(seed, 400, 4)
    elif fn in (ccc, ccc_organisers):
        truth, pred = _pair(seed, 400)
    else:
        truth, pred = _pair(seed, 400, k=3)
    fast = bootstrap_ci(fn, truth, pred, n_boot=300, seed=seed)
    loop = bootstrap_ci(lambda t, p: fn(t, p), truth, pred, n_boot=300, seed=seed)
    # Same resamples; the organisers' 4-decimal rounding may flip on round-off.
    tol = 2e-4 if fn in (ccc_organisers, mean_ccc_organisers_score) else 1e-9
    assert fast == pytest.approx(loop, abs=tol)


@pytest.mark.parametrize("fn", FAST_PATH, ids=lambda f: f.__name__)
def test_bootstrap_contains_point_and_narrows_with_n(fn) -> None:  # noqa: ANN001
    widths = []
    for n in (100, 5000):
        if fn is uar:
            truth, pred = _labels(0, n, 4)
        elif fn in (ccc, ccc_organisers):
            truth, pred = _pair(0, n)
        else:
            truth, pred = _pair(0, n, k=3)
        low, high = bootstrap_ci(fn, truth, pred, n_boot=400, seed=1)
        assert low <= fn(truth, pred) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # width ~ 1/sqrt(n): 1/7 expected


def test_bootstrap_is_deterministic_per_seed() -> None:
    truth, pred = _pair(0, 300, k=2)
    a = bootstrap_ci(mean_ccc_score, truth, pred, n_boot=200, seed=5)
    assert bootstrap_ci(mean_ccc_score, truth, pred, n_boot=200, seed=5) == a
    assert bootstrap_ci(mean_ccc_score, truth, pred, n_boot=200, seed=6) != a


def test_bootstrap_generic_metric_on_2d() -> None:
    truth, pred = _pair(0, 300, k=4)

    def worst_column(t: np.ndarray, p: np.ndarray) -> float:
        return min(mean_ccc(t, p)[1])

    low, high = bootstrap_ci(worst_column, truth, pred, n_boot=100, alpha=0.1)
    assert low < high


def test_bootstrap_speed_of_mean_ccc() -> None:
    truth, pred = _pair(0, 5000, k=10)
    start = time.perf_counter()
    bootstrap_ci(mean_ccc_score, truth, pred, n_boot=1000)
    # Measured about 0.1-0.3 s on a 2-core machine; the per-resample loop takes about 5 s.
    assert time.perf_counter() - start < 2.5


def test_bootstrap_rejects_bad_arguments() -> None:
    truth, pred = _pair(0, 10)
    with pytest.raises(ValueError, match="n_boot must be an integer >= 1, got 0"):
        bootstrap_ci(ccc, truth, pred, n_boot=0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got 1.5"):
        bootstrap_ci(ccc, truth, pred, alpha=1.5)
    with pytest.raises(ValueError, match="same number of rows"):
        bootstrap_ci(ccc, truth, pred[:5])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(ccc, truth, np.where(truth > 0.5, np.nan, pred))


# -------------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metric_names_say_their_direction(name: str) -> None:
    info = METRICS[name]
    assert info.target in METRIC_TARGETS
    assert isinstance(info.greater_is_better, bool) and info.description
    assert getattr(metrics, info.fn.__name__) is info.fn  # a public function of the package
    assert info.fn.__name__.endswith("_score" if info.greater_is_better else "_error")


@pytest.mark.parametrize("name", sorted(n for n, i in METRICS.items() if i.target != "text"))
def test_metric_contract(name: str) -> None:
    info = METRICS[name]
    assert info.target in METRIC_TARGETS
    assert isinstance(info.greater_is_better, bool) and info.description
    assert getattr(metrics, info.fn.__name__) is info.fn  # a public function of the package
    if info.target == "aggregate":
        assert round(info.fn(0.4900, 0.5010, 3.9952), 4) == 0.3735
        return
    if info.target == "regression":
        truth, noisy = _pair(0, 200, k=3)
    else:
        truth, noisy = _labels(0, 200, 4)
    perfect = info.fn(truth, truth.copy())
    worse = info.fn(truth, noisy)
    assert isinstance(perfect, float) and isinstance(worse, float)
    assert (perfect > worse) if info.greater_is_better else (perfect < worse)
    assert info.fn(truth, noisy) == worse  # deterministic
    with pytest.raises(ValueError, match="y_true and y_pred"):
        info.fn(truth, noisy[:-1])
    low, high = bootstrap_ci(info.fn, truth, noisy, n_boot=50)
    assert low <= worse <= high


# ---------------------------------------------------------------------- one UAR rule everywhere


def test_task_uar_counts_a_predicted_class_absent_from_the_truth() -> None:
    """The rule of heads.scoring (FIELD_NOTES 2): sklearn's macro recall = audmetric's UAR, over
    truth and predicted classes, in the run's score, its bootstrap and the point metric alike."""
    from data.tasks import COUNTRIES, get_task
    from heads.scoring import Resamples, headline_resamples, per_class_recall, score_task

    task = get_task("country")
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 200)  # class 3 never occurs in the truth
    pred = np.where(rng.random(200) < 0.6, truth, rng.integers(0, 4, 200))
    assert (pred == 3).any()
    names = np.array(COUNTRIES)
    expected = recall_score(truth, pred, average="macro", zero_division=0)
    assert expected == pytest.approx(audmetric.unweighted_average_recall(names[truth], names[pred]))
    scored = score_task(task, {"country": truth}, {"country": pred})
    assert scored["score"] == pytest.approx(expected, abs=1e-12)
    assert uar(truth, pred) == pytest.approx(expected, abs=1e-12)
    recalls = recall_score(truth, pred, average=None, labels=[0, 1, 2, 3], zero_division=0)
    assert list(per_class_recall(truth, pred).values()) == pytest.approx(list(recalls))
    assert scored["targets"]["country"]["per_class_recall"] == pytest.approx(
        dict(zip(COUNTRIES, recalls)))
    W = next(Resamples(200, 20, seed=4).chunks())  # noqa: N806
    boot = headline_resamples(task, {"country": truth}, {"country": pred}, W)
    for b, w in zip(boot, W):
        rows = np.repeat(np.arange(200), w.astype(int))
        assert b == pytest.approx(recall_score(truth[rows], pred[rows], average="macro",
                                               zero_division=0), abs=1e-12)
