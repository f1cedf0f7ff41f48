"""Tests for heads/training/weighting.py: every formula against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from heads.training.weighting import (
    WEIGHTINGS,
    DynamicRestrainedUncertaintyWeighting,
    DynamicWeightAverage,
    RestrainedRevisedUncertaintyWeighting,
    RevisedUncertaintyWeighting,
    UncertaintyWeighting,
    Weighting,
    build_weighting,
)


SPECS = {name: f"fixed:{','.join(['1'] * 3)}" if name == "fixed" else name for name in WEIGHTINGS}


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


# -- contract over the registry ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_contract(name: str) -> None:
    w = build_weighting(SPECS[name], num_tasks=3)
    assert isinstance(w, Weighting) and w.name == name
    losses = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
    for epoch in range(4):
        total = w.combine(losses, epoch=epoch)
        assert total.shape == () and torch.isfinite(total)
        weights = w.weights()
        assert len(weights) == 3 and all(isinstance(v, float) and v > 0 for v in weights)
        w.end_epoch([0.5 + epoch, 1.0, 2.0 / (epoch + 1)])
    total.backward()
    assert losses.grad is not None and torch.isfinite(losses.grad).all()
    for p in w.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    # state round trip (learned parameters and, for DWA, the loss history)
    clone = build_weighting(SPECS[name], num_tasks=3)
    clone.load_state_dict(w.state_dict())
    assert _f(clone.combine(losses, epoch=3)) == pytest.approx(_f(w.combine(losses, epoch=3)))
    assert clone.weights() == pytest.approx(w.weights())


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_contract_errors(name: str) -> None:
    w = build_weighting(SPECS[name], num_tasks=3)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        w.combine(torch.ones(2), epoch=0)
    with pytest.raises(ValueError, match="3 task losses"):
        w.end_epoch([1.0, 2.0])


def test_unknown_name_lists_the_registry() -> None:
    with pytest.raises(ValueError) as err:
        build_weighting("gradnorm", 2)
    for name in WEIGHTINGS:
        assert name in str(err.value)


def test_unknown_or_bad_option() -> None:
    with pytest.raises(ValueError, match="valid options: T"):
        build_weighting("dwa:temp=3", 2)
    with pytest.raises(ValueError, match="number"):
        build_weighting("dwa:T=hot", 2)
    with pytest.raises(ValueError, match="key=value"):
        build_weighting("uw:3", 2)
    with pytest.raises(ValueError, match="T must be > 0"):
        build_weighting("dwa:T=0", 2)


# -- equal / fixed ----------------------------------------------------------------------------
def test_equal() -> None:
    w = build_weighting("equal", 3)
    assert _f(w.combine(torch.tensor([1.0, 2.0, 3.0]), 0)) == 6.0
    assert w.weights() == [1.0, 1.0, 1.0]


def test_fixed() -> None:
    w = build_weighting("fixed:5,0.05,0.05", 3)
    assert _f(w.combine(torch.tensor([1.0, 2.0, 4.0]), 0)) == pytest.approx(5.0 + 0.1 + 0.2)
    assert w.weights() == pytest.approx([5.0, 0.05, 0.05])
    assert list(w.parameters()) == []


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("fixed:5,0.05", "2 weights"),
        ("fixed:1,2,3,4", "4 weights"),
        ("fixed", "one weight per task"),
        ("fixed:", "one weight per task"),
        ("fixed:1,,2", "comma-separated"),
        ("fixed:1,a,2", "numbers"),
        ("fixed:1,-1,2", ">= 0"),
        ("fixed:1,nan,2", "finite"),
    ],
)
def test_fixed_parse_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_weighting(spec, 3)


# -- uncertainty weightings -------------------------------------------------------------------
def test_uw_by_hand() -> None:
    w = build_weighting("uw", 3)
    assert w.weights() == [0.5, 0.5, 0.5]  # s = 0 -> 1 / (2 e^0)
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.0, math.log(2.0), -math.log(2.0)]))
    total = w.combine(torch.tensor([1.0, 2.0, 3.0]), 0)
    # 1/(2*1) + 0  +  2/(2*2) + ln2/2  +  3/(2*0.5) - ln2/2 = 0.5 + 0.5 + 3
    assert _f(total) == pytest.approx(4.0, abs=1e-6)
    assert w.weights() == pytest.approx([0.5, 0.25, 1.0], abs=1e-6)
    total.backward()
    # d/ds [L e^-s / 2 + s/2] = -L e^-s / 2 + 1/2 -> [0, 0, -2.5]
    assert w.log_vars.grad.tolist() == pytest.approx([0.0, 0.0, -2.5], abs=1e-6)


def test_uw_init_option() -> None:
    w = build_weighting("uw:init=1.5", 2)
    assert w.log_vars.tolist() == [1.5, 1.5]


def test_exvo_by_hand() -> None:
    w = build_weighting("exvo", 3)
    assert isinstance(w, UncertaintyWeighting)
    assert w.log_vars.tolist() == pytest.approx([-0.33] * 3)
    total = w.combine(torch.tensor([1.0, 2.0, 0.5]), 0)
    expected = sum(l / (2 * math.exp(-0.33)) - 0.33 / 2 for l in (1.0, 2.0, 0.5))
    assert _f(total) == pytest.approx(expected, abs=1e-6)
    assert w.weights() == pytest.approx([0.5 * math.exp(0.33)] * 3, abs=1e-6)


def test_ruw_by_hand() -> None:
    w = build_weighting("ruw", 2)
    assert isinstance(w, RevisedUncertaintyWeighting)
    assert w.variances().tolist() == pytest.approx([2.0, 2.0], abs=1e-6)  # default init s^2 = 2
    total = w.combine(torch.tensor([1.0, 4.0]), 0)
    expected = 1 / 2 + 4 / 2 + 2 * math.log(1 + math.log(2.0))
    assert _f(total) == pytest.approx(expected, abs=1e-6)
    assert w.weights() == pytest.approx([0.5, 0.5], abs=1e-6)


def test_ruw_gradient_by_hand() -> None:
    w = RevisedUncertaintyWeighting(1, init=math.e)
    total = w.combine(torch.tensor([2 * math.e]), 0)
    assert _f(total) == pytest.approx(2.0 + math.log(2.0), abs=1e-6)
    total.backward()
    # d/dv [L/v + log(1 + log v)] = -L/v^2 + 1/(v (1 + log v)) = -2/e + 1/(2e) at v = e, L = 2e;
    # dv/dp = sigmoid(p) with softplus(p) = e - 1
    dv_dp = 1 - math.exp(-(math.e - 1))
    assert float(w.raw.grad) == pytest.approx(-1.5 / math.e * dv_dp, abs=1e-6)


def test_ruw_stays_defined_at_the_boundary() -> None:
    w = RevisedUncertaintyWeighting(2)
    with torch.no_grad():
        w.raw.fill_(-60.0)  # softplus -> 0, s^2 -> 1 (never below)
    total = w.combine(torch.tensor([0.3, 0.7]), 0)
    assert _f(total) == pytest.approx(1.0, abs=1e-6)  # weights 1, log(1 + log 1) = 0
    assert min(w.variances().tolist()) >= 1.0
    with pytest.raises(ValueError, match="> 1"):
        RevisedUncertaintyWeighting(2, init=0.9)


def test_rruw_by_hand() -> None:
    w = build_weighting(f"rruw:init={math.e}", 2)
    assert isinstance(w, RestrainedRevisedUncertaintyWeighting)
    total = w.combine(torch.tensor([1.0, 2.0]), 0)
    # log v = 1 for both: RUW part 3/e + 2 log 2, restraint |1 - (1 + 1)| = 1
    assert _f(total) == pytest.approx(3 / math.e + 2 * math.log(2.0) + 1.0, abs=1e-6)
    assert w.weights() == pytest.approx([1 / math.e] * 2, abs=1e-6)
    w2 = build_weighting(f"rruw:phi=2,init={math.e}", 2)
    assert _f(w2.combine(torch.tensor([1.0, 2.0]), 0)) == pytest.approx(
        3 / math.e + 2 * math.log(2.0), abs=1e-6
    )


# -- DWA / DRUW -------------------------------------------------------------------------------
def _dwa_by_hand(prev: list[float], prev2: list[float], T: float) -> list[float]:
    r = [a / b for a, b in zip(prev, prev2)]
    e = [math.exp(v / T) for v in r]
    return [len(r) * v / sum(e) for v in e]


def test_dwa_first_two_epochs_are_equal() -> None:
    w = build_weighting("dwa", 2)
    assert w.T == 10.0
    losses = torch.tensor([1.0, 3.0])
    assert _f(w.combine(losses, 0)) == 4.0 and w.weights() == [1.0, 1.0]
    w.end_epoch([1.0, 2.0])
    assert _f(w.combine(losses, 1)) == 4.0 and w.weights() == [1.0, 1.0]


def test_dwa_by_hand() -> None:
    w = build_weighting("dwa:T=5", 2)
    w.end_epoch([1.0, 2.0])
    w.end_epoch([0.5, 2.0])  # task 0 fell by half, task 1 did not move
    expected = _dwa_by_hand([0.5, 2.0], [1.0, 2.0], T=5.0)
    total = w.combine(torch.tensor([1.0, 3.0]), 2)
    assert w.weights() == pytest.approx(expected, abs=1e-6)
    assert expected[1] > 1.0 > expected[0]  # the slower task gets more weight
    assert sum(w.weights()) == pytest.approx(2.0, abs=1e-6)
    assert _f(total) == pytest.approx(expected[0] * 1.0 + expected[1] * 3.0, abs=1e-5)
    w.end_epoch([0.5, 1.0])
    w.combine(torch.tensor([1.0, 3.0]), 3)
    assert w.weights() == pytest.approx(_dwa_by_hand([0.5, 1.0], [0.5, 2.0], T=5.0), abs=1e-6)


def test_dwa_weights_carry_no_gradient() -> None:
    w = DynamicWeightAverage(2)
    w.end_epoch([1.0, 1.0])
    w.end_epoch([2.0, 1.0])
    losses = torch.tensor([1.0, 1.0], requires_grad=True)
    w.combine(losses, 2).backward()
    assert losses.grad.tolist() == pytest.approx(w.weights())


def test_dwa_missing_history_is_an_error() -> None:
    w = DynamicWeightAverage(2)
    w.end_epoch([1.0, 1.0])
    with pytest.raises(ValueError, match="end_epoch"):
        w.combine(torch.ones(2), 2)


def test_druw_by_hand() -> None:
    w = build_weighting(f"druw:init={math.e}", 2)
    assert isinstance(w, DynamicRestrainedUncertaintyWeighting)
    losses = torch.tensor([1.0, 2.0])
    # epoch 0: DWA weights 1; RRUW: 3/e + 2 log 2 + |1 - 2|
    total = w.combine(losses, 0)
    assert _f(total) == pytest.approx(3.0 + 3 / math.e + 2 * math.log(2.0) + 1.0, abs=1e-6)
    assert w.weights() == pytest.approx([1 + 1 / math.e] * 2, abs=1e-6)
    w.end_epoch([1.0, 2.0])
    w.end_epoch([0.5, 2.0])
    dwa = _dwa_by_hand([0.5, 2.0], [1.0, 2.0], T=10.0)
    total = w.combine(losses, 2)
    expected = dwa[0] * 1.0 + dwa[1] * 2.0 + 3 / math.e + 2 * math.log(2.0) + 1.0
    assert _f(total) == pytest.approx(expected, abs=1e-5)
    assert w.weights() == pytest.approx([d + 1 / math.e for d in dwa], abs=1e-6)


def test_learned_weighting_moves_towards_its_optimum() -> None:
    """UW's optimum is s_k = log L_k: the weight 1 / (2 L_k) drops for the larger loss."""
    w = build_weighting("uw", 2)
    opt = torch.optim.SGD(w.parameters(), lr=0.1)
    losses = torch.tensor([1.0, 4.0])
    for _ in range(300):
        opt.zero_grad()
        w.combine(losses, 0).backward()
        opt.step()
    assert w.log_vars.tolist() == pytest.approx([0.0, math.log(4.0)], abs=1e-3)
    assert w.weights() == pytest.approx([0.5, 0.125], abs=1e-3)
