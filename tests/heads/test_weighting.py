"""Tests for heads/training/weighting.py: every formula against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from heads.config import WEIGHTING_NAMES
from heads.training.weighting import (
    WEIGHTINGS,
    DynamicRestrainedUncertaintyWeighting,
    DynamicWeightAverage,
    EqualWeighting,
    RestrainedRevisedUncertaintyWeighting,
    RevisedUncertaintyWeighting,
    UncertaintyWeighting,
    Weighting,
    build_weighting,
    register_weighting,
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


def test_registry_matches_the_names_settings_are_checked_against() -> None:
    # heads.config.WEIGHTING_NAMES lets FinetuneConfig.check() name a bad weighting without torch
    assert sorted(WEIGHTINGS) == sorted(WEIGHTING_NAMES)


def test_a_name_outside_weighting_names_is_refused() -> None:
    class Unlisted(EqualWeighting):
        name = "gradnorm"

    with pytest.raises(ValueError, match="WEIGHTING_NAMES"):
        register_weighting(Unlisted)
    assert "gradnorm" not in WEIGHTINGS


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


# -- RUW / RRUW: seed 003's Eq. 2 and Eq. 4, a_k the paper's alpha, weight 1 / a_k^2 -----------
def _eq4_by_hand(log_alpha, losses, *, form: str, phi: float = 1.0, floor: float = 0.5,
                 restraint_on: str = "alpha") -> float:
    """Eq. 4 of Song et al. written out: sum L_k / a_k^2 + reg(a_k) + |phi - sum |log a_k||.

    ``restraint_on = "alpha^2"`` is the earlier reading of this module (|log a_k^2|, twice the
    paper's term), kept here only to show that its optimum differs.
    """
    v = [math.exp(2 * la) for la in log_alpha]
    if form == "paper":
        if min(v) <= floor:
            return 1e9
        reg = [math.log(1 + math.log(x)) for x in v]
    else:
        reg = [math.log(1 + x) for x in v]
    total = sum(l / x + r for l, x, r in zip(losses, v, reg))
    scale = 1.0 if restraint_on == "alpha" else 2.0
    return total + abs(phi - sum(abs(scale * la) for la in log_alpha))


def _optimum_by_hand(losses, **kw) -> list[float]:
    """Weights 1 / a_k^2 at the minimum of Eq. 4 (Nelder-Mead from several starts; scipy)."""
    from scipy.optimize import minimize

    best = None
    for x0 in ([0.0] * 3, [0.3, 0.3, -0.3], [-0.1, 0.5, -0.5], [0.1, 0.1, 0.1]):
        res = minimize(lambda x: _eq4_by_hand(x, losses, **kw), x0, method="Nelder-Mead",
                       options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
        best = res if best is None or res.fun < best.fun else best
    return [math.exp(-2 * la) for la in best.x]


def _descend(w: Weighting, losses: torch.Tensor, steps: int = 6000) -> list[list[float]]:
    """Adam on the weighting's own parameters for fixed losses; the weights after every step."""
    opt = torch.optim.Adam(w.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-5)
    trajectory = []
    for _ in range(steps):
        opt.zero_grad()
        w.combine(losses, 0).backward()
        opt.step()
        sched.step()
        trajectory.append(w.weights())
    return trajectory


@pytest.mark.parametrize("form", ["liebel", "paper"])
def test_ruw_by_hand(form: str) -> None:
    w = build_weighting(f"ruw:form={form}", 2)
    assert isinstance(w, RevisedUncertaintyWeighting) and w.form == form
    assert w.variances().tolist() == pytest.approx([1.0, 1.0], abs=1e-6)  # a^2 = 1: weight 1
    with torch.no_grad():  # a^2 = (2, e)
        if form == "paper":
            w.raw.copy_(torch.tensor([2.0 - 0.5, math.e - 0.5]).expm1().log())  # softplus^-1
        else:
            w.raw.copy_(torch.tensor([math.log(2.0), 1.0]))
    total = w.combine(torch.tensor([1.0, 4.0]), 0)
    if form == "paper":  # Eq. 2: L / a^2 + log(1 + log a^2)
        expected = 1 / 2 + 4 / math.e + math.log(1 + math.log(2.0)) + math.log(1 + 1.0)
    else:  # Liebel & Koerner: L / a^2 + log(1 + a^2)
        expected = 1 / 2 + 4 / math.e + math.log(3.0) + math.log(1 + math.e)
    assert _f(total) == pytest.approx(expected, abs=1e-5)
    assert w.weights() == pytest.approx([0.5, 1 / math.e], abs=1e-5)


def test_ruw_gradient_by_hand() -> None:
    w = build_weighting(f"ruw:form=paper,floor=0.5,init={math.e}", 1)
    total = w.combine(torch.tensor([2 * math.e]), 0)
    assert _f(total) == pytest.approx(2.0 + math.log(2.0), abs=1e-5)
    total.backward()
    # d/dv [L/v + log(1 + log v)] = -L/v^2 + 1/(v (1 + log v)) = -2/e + 1/(2e) at v = e, L = 2e;
    # v = 0.5 + softplus(p): dv/dp = sigmoid(p) = 1 - exp(-(e - 0.5))
    dv_dp = 1 - math.exp(-(math.e - 0.5))
    assert float(w.raw.grad) == pytest.approx(-1.5 / math.e * dv_dp, abs=1e-5)
    w = build_weighting("ruw", 1)  # liebel, a^2 = exp(t): d/dt [L e^-t + log(1 + e^t)] at t = 0
    w.combine(torch.tensor([0.3]), 0).backward()
    assert float(w.raw.grad) == pytest.approx(-0.3 + 0.5, abs=1e-6)


def test_ruw_options_are_checked() -> None:
    with pytest.raises(ValueError, match="form must be one of"):
        build_weighting("ruw:form=kendall", 2)
    with pytest.raises(ValueError, match="floor must be > 1/e"):
        build_weighting("ruw:form=paper,floor=0.3", 2)
    with pytest.raises(ValueError, match="must be > floor"):
        build_weighting("ruw:form=paper,floor=1,init=0.9", 2)
    with pytest.raises(ValueError, match="must be > 0"):
        build_weighting("rruw:init=0", 2)
    with pytest.raises(ValueError, match="number"):
        build_weighting("ruw:floor=low", 2)


def _paper_root(loss: float) -> float:
    """The root v > 1 of v / (1 + log v) = L (the paper form's interior minimum), by bisection."""
    lo, hi = 1.0, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid / (1 + math.log(mid)) < loss else (lo, mid)
    return lo


def test_ruw_weight_trajectories_by_reading() -> None:
    """CCC-like losses <= 1 and a CE > 1: each reading's weights over 3000 Adam steps.

    The old cap (paper form, floor 1) never leaves equal weighting for a loss <= 1; the
    default (liebel) moves every weight to its finite optimum 2 / (L + sqrt(L^2 + 4 L)), away
    from 1; the paper form with floor 0.5 drives losses <= 1 to the bound 1 / floor = 2.
    """
    losses = torch.tensor([0.4, 0.15, 1.1])
    capped = _descend(build_weighting("ruw:form=paper,floor=1,init=1.0001", 3), losses, steps=3000)
    liebel = _descend(build_weighting("ruw", 3), losses, steps=3000)
    paper = _descend(build_weighting("ruw:form=paper,floor=0.5", 3), losses, steps=3000)
    # the old cap: equal weighting throughout for the two losses <= 1
    assert all(t[:2] == pytest.approx([1.0, 1.0], abs=2e-3) for t in capped)
    assert capped[-1][2] == pytest.approx(1 / _paper_root(1.1), abs=2e-3)
    # the default: finite, away from EW, at Liebel & Koerner's closed-form optimum
    optimum = [2 / (l + math.sqrt(l * l + 4 * l)) for l in (0.4, 0.15, 1.1)]
    assert liebel[-1] == pytest.approx(optimum, abs=2e-3)
    assert liebel[-1][1] > liebel[-1][0] > 1.0 > liebel[-1][2]
    assert all(math.isfinite(v) for t in liebel for v in t)
    w_small = [t[1] for t in liebel]  # the smallest loss: above 1 from the first step, bounded
    assert all(1.0 < v < 1.5 * optimum[1] for v in w_small)
    # the paper's form on [0.5, inf): losses <= 1 go to the bound, the CE to its root
    assert paper[-1][:2] == pytest.approx([2.0, 2.0], abs=2e-2)
    assert paper[-1][2] == pytest.approx(1 / _paper_root(1.1), abs=2e-3)


def test_rruw_restraint_is_on_alpha_not_alpha_squared() -> None:
    """Eq. 4's restraint |phi - (|log a_1| + |log a_2|)|: a task that carries the whole
    restraint (phi = 1) sits at |log a| = 1, weight e^-2; on log a^2 it would be e^-1."""
    w = build_weighting("rruw", 3)
    assert isinstance(w, RestrainedRevisedUncertaintyWeighting) and w.phi == 1.0
    with torch.no_grad():
        w.raw.copy_(torch.tensor([2.0, 0.0, 0.0]))  # log a^2 = 2: |log a| = 1, weight e^-2
    losses = torch.tensor([0.4, 1.1, 0.15])
    ruw = sum(l / v + math.log(1 + v) for l, v in zip((0.4, 1.1, 0.15), (math.e ** 2, 1.0, 1.0)))
    assert _f(w.combine(losses, 0)) == pytest.approx(ruw + 0.0, abs=1e-5)  # restraint met
    assert w.weights()[0] == pytest.approx(math.exp(-2), abs=1e-6)
    with torch.no_grad():
        w.raw.copy_(torch.tensor([1.0, 0.0, 0.0]))  # weight e^-1: |log a| = 1/2, restraint 1/2
    ruw = sum(l / v + math.log(1 + v) for l, v in zip((0.4, 1.1, 0.15), (math.e, 1.0, 1.0)))
    assert _f(w.combine(losses, 0)) == pytest.approx(ruw + 0.5, abs=1e-5)


@pytest.mark.parametrize("form", ["liebel", "paper"])
def test_rruw_worked_example_optimum(form: str) -> None:
    """Losses (0.4, 1.1, 0.15): descending the module reaches the minimum of Eq. 4 computed by
    hand, and that minimum differs from the one with the restraint on log a^2."""
    losses = (0.4, 1.1, 0.15)
    expected = _optimum_by_hand(losses, form=form)
    other = _optimum_by_hand(losses, form=form, restraint_on="alpha^2")
    w = build_weighting(f"rruw:form={form}", 3)
    got = _descend(w, torch.tensor(losses))[-1]
    assert got == pytest.approx(expected, rel=2e-2)
    log_alpha = [-0.5 * math.log(v) for v in got]
    assert sum(abs(x) for x in log_alpha) == pytest.approx(1.0, abs=1e-2)  # the restraint binds
    assert max(abs(a - b) / b for a, b in zip(expected, other)) > 0.1


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
    """Eq. 5: (DWA weight + 1 / a_k^2) L_k + reg(a_k) + |phi - sum |log a_k||."""
    w = build_weighting(f"druw:init={math.e}", 2)
    assert isinstance(w, DynamicRestrainedUncertaintyWeighting)
    assert w.dwa.T == 10.0 and w.rruw.phi == 1.0 and w.rruw.form == "liebel"
    losses = torch.tensor([1.0, 2.0])
    # epoch 0: DWA weights 1; a^2 = e: RRUW 3/e + 2 log(1 + e) + |1 - (1/2 + 1/2)|
    total = w.combine(losses, 0)
    assert _f(total) == pytest.approx(3.0 + 3 / math.e + 2 * math.log(1 + math.e) + 0.0, abs=1e-5)
    assert w.weights() == pytest.approx([1 + 1 / math.e] * 2, abs=1e-6)
    w.end_epoch([1.0, 2.0])
    w.end_epoch([0.5, 2.0])
    dwa = _dwa_by_hand([0.5, 2.0], [1.0, 2.0], T=10.0)
    total = w.combine(losses, 2)
    expected = dwa[0] * 1.0 + dwa[1] * 2.0 + 3 / math.e + 2 * math.log(1 + math.e)
    assert _f(total) == pytest.approx(expected, abs=1e-5)
    assert w.weights() == pytest.approx([d + 1 / math.e for d in dwa], abs=1e-6)
    p = build_weighting(f"druw:form=paper,init={math.e}", 2)  # Eq. 5 with Eq. 2's regulariser
    assert _f(p.combine(losses, 0)) == pytest.approx(3.0 + 3 / math.e + 2 * math.log(2.0), abs=1e-5)


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


def test_dwa_per_step_reads_t_as_the_training_step() -> None:
    """Eq. 3 with t the step: the weights of step t come from the losses of steps t-1 and t-2."""
    w = build_weighting("dwa:T=5,per=step", 2)
    steps = [torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.0]), torch.tensor([0.5, 1.0]), torch.tensor([1.0, 1.0])]
    w.combine(steps[0], 0)
    assert w.weights() == [1.0, 1.0]
    w.combine(steps[1], 0)
    assert w.weights() == [1.0, 1.0]  # no two previous steps yet
    total = w.combine(steps[2], 0)
    expected = _dwa_by_hand([0.5, 2.0], [1.0, 2.0], T=5.0)
    assert w.weights() == pytest.approx(expected, abs=1e-6)
    assert _f(total) == pytest.approx(expected[0] * 0.5 + expected[1] * 1.0, abs=1e-6)
    clone = build_weighting("dwa:T=5,per=step", 2)
    clone.load_state_dict(w.state_dict())  # the recent steps travel with the state
    w.combine(steps[3], 0)
    clone.combine(steps[3], 0)
    assert clone.weights() == pytest.approx(w.weights(), abs=1e-9)
    assert w.weights() == pytest.approx(_dwa_by_hand([0.5, 1.0], [0.5, 2.0], T=5.0), abs=1e-6)
    w.end_epoch([9.0, 9.0])  # epoch means do not enter the per-step weights
    assert build_weighting("druw:per=step", 2).dwa.per == "step"
    with pytest.raises(ValueError, match="per must be one of"):
        build_weighting("dwa:per=batch", 2)
