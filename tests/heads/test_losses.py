"""Tests for heads/training/losses.py: each loss against a naive NumPy version or hand values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heads.training.losses import (
    LOSSES,
    ccc_loss,
    cross_entropy_loss,
    inverse_frequency_weights,
    mae_loss,
    mse_loss,
)



def numpy_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC with population moments, written out term by term."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mx, my = x.mean(), y.mean()
    vx = ((x - mx) ** 2).mean()
    vy = ((y - my) ** 2).mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (vx + vy + (mx - my) ** 2)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.uniform(size=(40, 5))
    x = 0.6 * y + 0.3 * rng.uniform(size=(40, 5)) + 0.1
    return x, y


REGRESSION_LOSSES = ["ccc", "mse", "mae"]


def test_registry_holds_every_loss() -> None:
    assert LOSSES == {"ccc": ccc_loss, "mse": mse_loss, "mae": mae_loss, "ce": cross_entropy_loss}


def test_ccc_loss_is_one_minus_ccc(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    expected = np.mean([1 - numpy_ccc(x[:, c], y[:, c]) for c in range(x.shape[1])])
    got = ccc_loss(torch.from_numpy(x), torch.from_numpy(y))
    assert float(got) == pytest.approx(expected, abs=1e-12)
    got32 = ccc_loss(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert float(got32) == pytest.approx(expected, abs=1e-6)


def test_ccc_loss_hand_values() -> None:
    x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    # var_x = 1.25, var_y = 5, cov = 2.5, mean diff = 1.5 -> ccc = 5 / 8.5
    assert float(ccc_loss(x, 2 * x)) == pytest.approx(1 - 5 / 8.5, abs=1e-7)
    assert float(ccc_loss(x, x)) == pytest.approx(0.0, abs=1e-7)
    assert float(ccc_loss(x, 3 - x)) == pytest.approx(2.0, abs=1e-7)  # same mean, ccc = -1
    # 1-D input is one column, identical to (batch, 1)
    assert float(ccc_loss(x, 2 * x)) == float(ccc_loss(x[:, None], 2 * x[:, None]))


def test_ccc_loss_mask_per_column(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    rng = np.random.default_rng(1)
    mask = rng.uniform(size=y.shape) > 0.3
    y_nan = np.where(mask, y, np.nan)  # missing labels may be NaN
    expected = np.mean(
        [1 - numpy_ccc(x[mask[:, c], c], y[mask[:, c], c]) for c in range(x.shape[1])]
    )
    pred = torch.from_numpy(x).requires_grad_(True)
    got = ccc_loss(pred, torch.from_numpy(y_nan), torch.from_numpy(mask))
    assert float(got.detach()) == pytest.approx(expected, abs=1e-12)
    got.backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[torch.from_numpy(~mask)] == 0).all()


def test_ccc_loss_skips_columns_without_labels(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    mask = np.ones_like(y, dtype=bool)
    mask[:, 2] = False
    expected = np.mean([1 - numpy_ccc(x[:, c], y[:, c]) for c in (0, 1, 3, 4)])
    got = ccc_loss(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask))
    assert float(got) == pytest.approx(expected, abs=1e-12)


def test_ccc_loss_gradcheck() -> None:
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.rand(8, 3, generator=gen, dtype=torch.float64)
    mask = torch.rand(8, 3, generator=gen) > 0.2
    assert torch.autograd.gradcheck(lambda p: ccc_loss(p, target, mask), (pred,))


@pytest.mark.parametrize("name", REGRESSION_LOSSES)
def test_all_masked_gives_connected_zero(name: str) -> None:
    pred = torch.rand(4, 2, requires_grad=True)
    loss = LOSSES[name](pred, torch.full((4, 2), float("nan")), torch.zeros(4, 2, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert (pred.grad == 0).all()


@pytest.mark.parametrize("name", REGRESSION_LOSSES)
def test_shape_mismatch_is_an_error(name: str) -> None:
    with pytest.raises(ValueError, match="same shape"):
        LOSSES[name](torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="mask"):
        LOSSES[name](torch.zeros(4, 2), torch.zeros(4, 2), torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize(
    ("fn", "naive"),
    [(mse_loss, lambda d: np.mean(d**2)), (mae_loss, lambda d: np.mean(np.abs(d)))],
)
def test_mse_mae_mean_over_valid_entries(fn, naive, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    mask = np.random.default_rng(2).uniform(size=y.shape) > 0.5
    expected = naive(x[mask] - y[mask])
    got = fn(torch.from_numpy(x), torch.from_numpy(np.where(mask, y, np.nan)), torch.from_numpy(mask))
    assert float(got) == pytest.approx(expected, abs=1e-12)
    assert float(fn(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(naive(x - y))


def test_mse_mae_hand_values() -> None:
    pred = torch.tensor([[1.0, 5.0], [-2.0, 0.0]])
    target = torch.zeros(2, 2)
    mask = torch.tensor([[True, False], [True, True]])
    assert float(mse_loss(pred, target, mask)) == pytest.approx((1 + 4 + 0) / 3)
    assert float(mae_loss(pred, target, mask)) == pytest.approx((1 + 2 + 0) / 3)


def _nll(logits: list[float], label: int) -> float:
    """-log softmax(logits)[label] by hand."""
    return -(logits[label] - math.log(sum(math.exp(v) for v in logits)))


def test_cross_entropy_class_weights_by_hand() -> None:
    rows = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [0.3, 0.2, 0.1]]
    labels = [0, 1, 2]
    w = [0.5, 2.0, 1.0]
    expected = sum(w[y] * _nll(r, y) for r, y in zip(rows, labels)) / sum(w[y] for y in labels)
    got = cross_entropy_loss(torch.tensor(rows), torch.tensor(labels), class_weights=w)
    assert float(got) == pytest.approx(expected, abs=1e-6)
    plain = sum(_nll(r, y) for r, y in zip(rows, labels)) / 3
    assert float(cross_entropy_loss(torch.tensor(rows), torch.tensor(labels))) == pytest.approx(
        plain, abs=1e-6
    )


def test_cross_entropy_label_smoothing_by_hand() -> None:
    rows = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]]
    labels = [0, 2]
    eps, n_classes = 0.1, 3
    per_row = [
        (1 - eps) * _nll(r, y) + eps / n_classes * sum(_nll(r, c) for c in range(n_classes))
        for r, y in zip(rows, labels)
    ]
    got = cross_entropy_loss(torch.tensor(rows), torch.tensor(labels), label_smoothing=eps)
    assert float(got) == pytest.approx(sum(per_row) / 2, abs=1e-6)


def test_cross_entropy_ignore_index() -> None:
    rows = torch.tensor([[2.0, 0.5], [0.0, 1.0], [5.0, -5.0]])
    got = cross_entropy_loss(rows, torch.tensor([0, -1, -1]))
    assert float(got) == pytest.approx(_nll([2.0, 0.5], 0), abs=1e-6)
    logits = torch.zeros(2, 3, requires_grad=True)
    none = cross_entropy_loss(logits, torch.tensor([-1, -1]))
    assert float(none.detach()) == 0.0
    none.backward()


def test_cross_entropy_errors() -> None:
    with pytest.raises(ValueError, match="class_weights"):
        cross_entropy_loss(torch.zeros(2, 3), torch.tensor([0, 1]), class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy_loss(torch.zeros(2, 3), torch.tensor([0, 1]), label_smoothing=1.0)
    with pytest.raises(ValueError, match="target"):
        cross_entropy_loss(torch.zeros(2, 3), torch.tensor([0, 1, 2]))


def test_inverse_frequency_weights_hand_values() -> None:
    assert inverse_frequency_weights([1, 3]).tolist() == [1.5, 0.5]
    assert inverse_frequency_weights([7, 7, 7]).tolist() == [1.0, 1.0, 1.0]
    # FIELD_NOTES section 1, Train type counts: Cry, Gasp, Groan, Grunt, Laugh, Other, Pant, Scream
    counts = [1845, 7104, 1366, 1347, 4940, 1348, 467, 1573]
    w = inverse_frequency_weights(counts)
    expected = [0.7376, 0.1916, 0.9963, 1.0103, 0.2755, 1.0096, 2.9141, 0.8651]
    assert w.tolist() == pytest.approx(expected, abs=1e-4)
    assert float(w.sum()) == pytest.approx(8.0, abs=1e-5)
    # w_c * n_c is the same for every class: each class contributes equally in total
    assert (w * torch.tensor(counts, dtype=torch.float32)).tolist() == pytest.approx(
        [float(w[0]) * 1845] * 8, rel=1e-5
    )
    # country: China, South Africa, United States, Venezuela
    assert inverse_frequency_weights(torch.tensor([5120, 5090, 7142, 2638])).tolist() == pytest.approx(
        [0.8577, 0.8628, 0.6149, 1.6647], abs=1e-4
    )


def test_inverse_frequency_weights_errors() -> None:
    with pytest.raises(ValueError, match="> 0"):
        inverse_frequency_weights([10, 0, 3])
    with pytest.raises(ValueError, match="non-empty"):
        inverse_frequency_weights([])
