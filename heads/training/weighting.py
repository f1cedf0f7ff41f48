"""Multitask loss weighting strategies and the :data:`WEIGHTINGS` registry.

A weighting turns the K per-task losses of a step into one scalar to minimise. Every strategy
is an :class:`torch.nn.Module` (most have no parameters; pass ``weighting.parameters()`` to the
optimiser together with the net's, it is harmless when empty) with one interface:

* ``combine(losses, epoch)``: ``losses`` (K,) -> scalar total for this step;
* ``weights()``: the current effective weight on each task loss, for logging;
* ``end_epoch(epoch_losses)``: the epoch's mean loss per task, for strategies that use the loss
  history (DWA, DRUW); the others ignore it. Call it once after every epoch.

Build one from a spec string with :func:`build_weighting`:

    >>> import torch
    >>> w = build_weighting("fixed:5,0.05,0.05", num_tasks=3)
    >>> round(float(w.combine(torch.tensor([1.0, 2.0, 4.0]), epoch=0)), 4)
    5.3
    >>> sorted(WEIGHTINGS)
    ['druw', 'dwa', 'equal', 'exvo', 'fixed', 'rruw', 'ruw', 'uw']

One concept, at length: multitask loss weighting (every strategy the reproduced papers
use, with their equations, options and the registry) in one place, so that strategies are
compared on one interface.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heads.config import WEIGHTING_NAMES
from heads.config import parse_weighting as parse_spec  # the spec's name and argument

WEIGHTINGS: dict[str, type["Weighting"]] = {}
"""Weighting name -> class; :func:`build_weighting` makes instances from spec strings."""


def register_weighting(cls: type["Weighting"]) -> type["Weighting"]:
    """Class decorator: put a weighting into :data:`WEIGHTINGS` under its ``name``.

    Raises:
        ValueError: the name is registered already, or is not one of
            :data:`heads.config.WEIGHTING_NAMES` (add it there: settings are checked against it).
    """
    if cls.name not in WEIGHTING_NAMES:
        raise ValueError(f"weighting name {cls.name!r} is not in heads.config.WEIGHTING_NAMES; "
                         f"add it there")
    if cls.name in WEIGHTINGS:
        raise ValueError(f"weighting name {cls.name!r} is registered twice")
    WEIGHTINGS[cls.name] = cls
    return cls


class Weighting(nn.Module):
    """Base class: K task losses -> one scalar. Subclasses set ``name`` and ``_combine``.

    Args:
        num_tasks: K, the number of task losses :meth:`combine` receives.

    Raises:
        ValueError: ``num_tasks`` < 1.
    """

    name: ClassVar[str]

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        if int(num_tasks) < 1:
            raise ValueError(f"num_tasks must be >= 1; got {num_tasks}")
        self.num_tasks = int(num_tasks)

    def combine(self, losses: Tensor, epoch: int) -> Tensor:
        """The total loss of one step.

        Args:
            losses: the K task losses of this step, (K,), each a scalar with its graph.
            epoch: 0-based epoch index (strategies with a history use it).

        Returns:
            Scalar tensor.

        Raises:
            ValueError: ``losses`` is not shaped (K,).
        """
        if losses.shape != (self.num_tasks,):
            raise ValueError(
                f"{self.name}: losses must have shape ({self.num_tasks},) (one per task); "
                f"got {tuple(losses.shape)}"
            )
        return self._combine(losses, int(epoch))

    def forward(self, losses: Tensor, epoch: int) -> Tensor:
        """Same as :meth:`combine`."""
        return self.combine(losses, epoch)

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        raise NotImplementedError

    def weights(self) -> list[float]:
        """The current effective weight on each task loss, (K,) as floats, for logging."""
        raise NotImplementedError

    def end_epoch(self, epoch_losses: list[float]) -> None:
        """Receive the epoch's mean loss per task. Default: not used.

        Raises:
            ValueError: ``epoch_losses`` does not have K entries.
        """
        self._check_epoch_losses(epoch_losses)

    def _check_epoch_losses(self, epoch_losses: list[float]) -> list[float]:
        values = [float(v) for v in epoch_losses]
        if len(values) != self.num_tasks:
            raise ValueError(
                f"{self.name}: end_epoch needs {self.num_tasks} task losses; got {len(values)}"
            )
        return values

    @classmethod
    def from_arg(cls, arg: str, num_tasks: int) -> "Weighting":
        """Build from the part of a spec after ``name:``: ``key=value`` pairs, comma separated.

        The valid keys are the keyword-only arguments of the class's ``__init__``.

        Raises:
            ValueError: an unknown key, a malformed pair, or a value that is not a number.
        """
        valid = {
            p.name: p
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        kwargs: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in arg.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(
                    f"weighting {cls.name!r}: expected key=value, got {item!r} "
                    f"(valid keys: {', '.join(valid) or 'none'})"
                )
            if key not in valid:
                raise ValueError(
                    f"weighting {cls.name!r}: unknown option {key!r}; "
                    f"valid options: {', '.join(valid) or 'none'}"
                )
            if isinstance(valid[key].default, str):  # a named choice (e.g. RUW form)
                kwargs[key] = value.strip()
                continue
            try:
                kwargs[key] = float(value)
            except ValueError:
                raise ValueError(
                    f"weighting {cls.name!r}: option {key} must be a number; got {value!r}"
                ) from None
        return cls(num_tasks, **kwargs)


@register_weighting
class EqualWeighting(Weighting):
    """Equal weights: ``L = sum_k L_k`` (EW, the baseline of seed 003)."""

    name = "equal"

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        return losses.sum()

    def weights(self) -> list[float]:
        return [1.0] * self.num_tasks


@register_weighting
class FixedWeighting(Weighting):
    """Fixed weights: ``L = sum_k w_k L_k``.

    Seed 001 (ResNet/Conformer, FIELD_NOTES section 4) uses ``fixed:5,0.05,0.05`` for
    (emotion, country, age).

    Args:
        num_tasks: K.
        task_weights: K finite weights >= 0.

    Raises:
        ValueError: the count differs from K, or a weight is negative or not finite.
    """

    name = "fixed"

    def __init__(self, num_tasks: int, task_weights: list[float] | tuple[float, ...]) -> None:
        super().__init__(num_tasks)
        values = [float(w) for w in task_weights]
        if len(values) != self.num_tasks:
            raise ValueError(
                f"fixed: got {len(values)} weights {values} for {self.num_tasks} tasks; "
                f"give one weight per task, e.g. 'fixed:{','.join(['1'] * self.num_tasks)}'"
            )
        bad = [w for w in values if not math.isfinite(w) or w < 0]
        if bad:
            raise ValueError(f"fixed: weights must be finite and >= 0; got {bad}")
        self.register_buffer("task_weights", torch.tensor(values), persistent=True)

    @classmethod
    def from_arg(cls, arg: str, num_tasks: int) -> "FixedWeighting":
        """Parse ``w1,w2,...`` (the part after ``fixed:``).

        Raises:
            ValueError: empty, a value that is not a number, or a count other than K.
        """
        items = [s.strip() for s in arg.split(",")]
        if not arg.strip() or any(not s for s in items):
            raise ValueError(
                f"fixed: expected comma-separated weights like 'fixed:5,0.05,0.05'; got {arg!r}"
            )
        try:
            values = [float(s) for s in items]
        except ValueError:
            raise ValueError(f"fixed: weights must be numbers; got {arg!r}") from None
        return cls(num_tasks, values)

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        return (self.task_weights.to(losses) * losses).sum()

    def weights(self) -> list[float]:
        return [float(w) for w in self.task_weights]


@register_weighting
class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty weighting (UW), learned log variances.

    Kendall, Gal & Cipolla (2018), "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics", CVPR, Eq. 7: ``L = sum_k L_k / (2 sigma_k^2) + log sigma_k``.
    With ``s_k = log sigma_k^2`` as the parameter (numerically stable, unconstrained):

        ``L = sum_k L_k / (2 exp(s_k)) + s_k / 2``,  effective weight ``1 / (2 exp(s_k))``.

    Eq. 10 of the paper derives ``L_k / sigma_k^2`` (no factor 1/2) for a classification
    likelihood; as is common practice (and as seed 000 does) every task uses the regression
    form above; the factor of 2 only rescales that task's optimal ``sigma``.

    Args:
        num_tasks: K.
        init: initial value of every ``s_k`` (0 -> weight 1/2).
    """

    name = "uw"

    def __init__(self, num_tasks: int, *, init: float = 0.0) -> None:
        super().__init__(num_tasks)
        self.log_vars = nn.Parameter(torch.full((self.num_tasks,), float(init)))  # (K,) s_k

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        s = self.log_vars.to(losses.dtype)  # (K,)
        return (losses / (2.0 * torch.exp(s)) + s / 2.0).sum()

    def weights(self) -> list[float]:
        return [float(w) for w in 0.5 * torch.exp(-self.log_vars.detach())]


@register_weighting
class ExvoWeighting(UncertaintyWeighting):
    """The ExVo 2022 organisers' learned log-variance weighting.

    Baird et al. (2022), "The ICML 2022 Expressive Vocalizations Workshop and Challenge",
    multitask baseline (FIELD_NOTES section 4): ``L = sum_i loss_i / (2 exp(s_i)) + s_i / 2``
    with every ``s_i`` initialised to -0.33. This is Kendall et al. (2018) Eq. 7 in the
    log-variance form of :class:`UncertaintyWeighting`, with the organisers' initial value.

    Args:
        num_tasks: K.
        init: initial ``s_i``.
    """

    name = "exvo"

    def __init__(self, num_tasks: int, *, init: float = -0.33) -> None:
        super().__init__(num_tasks, init=init)


def _inverse_softplus(y: float) -> float:
    """``p`` with ``softplus(p) = y`` for ``y > 0``."""
    return y + math.log(-math.expm1(-y))


DWA_PER = ("epoch", "step")
"""What DWA's ``t`` counts, see :class:`DynamicWeightAverage`."""

RUW_FORMS = ("liebel", "paper")
"""The readings of seed 003's RUW regulariser (Eq. 2), see :class:`RevisedUncertaintyWeighting`."""

PAPER_FLOOR_MIN = math.exp(-1.0)
"""``log(1 + log a^2)`` is defined for ``a^2 > 1/e`` only; the ``paper`` form's floor must exceed it."""


@register_weighting
class RevisedUncertaintyWeighting(Weighting):
    """Revised uncertainty weighting (RUW), seed 003's Eq. 2, in two named readings.

    Song et al. (2022), "Dynamic Restrained Uncertainty Weighting Loss for Multitask Learning
    of Vocal Expression", ICML ExVo workshop, Eq. 2, with ``a_k`` the paper's alpha:

        ``L = sum_k L_k / a_k^2 + log(1 + log a_k^2)``,  weight on task k: ``1 / a_k^2``.

    As printed, the regulariser needs ``a^2 > 1/e`` and tends to ``-inf`` at that edge: for a
    loss ``L_k <= 1`` the objective has no minimum (``d/dv [L/v + log(1 + log v)] =
    (v / (1 + log v) - L) / v^2 > 0`` for every ``v = a^2``, because ``v / (1 + log v) >= 1``).
    The paper cites Liebel & Koerner (2018), whose regulariser is ``log(1 + sigma^2)``. Two
    readings, chosen with ``form``:

    * ``liebel`` (default): ``L_k / a_k^2 + log(1 + a_k^2)``, ``a_k^2 = exp(t_k)`` with ``t_k``
      free. The minimum is finite for every loss > 0: ``a^2 = (L + sqrt(L^2 + 4 L)) / 2``, so
      the weight exceeds 1 for ``L < 1/2`` and falls below it above: it differs from equal
      weighting (the paper reports RUW apart from EW in its Table 1).
    * ``paper``: Eq. 2 as printed on the bounded domain ``a_k^2 = floor + softplus(p_k) >
      floor`` with ``floor > 1/e`` (default 0.5: weights up to 2). A loss ``<= 1`` drives its
      weight to ``1 / floor``; a loss ``> 1`` has a local minimum at the root ``v > 1`` of
      ``v / (1 + log v) = L``. ``floor = 1`` is the earlier reading of this module (weights
      never above 1, so RUW equals equal weighting while every loss is <= 1).

    Initialisation is not stated in the paper: every ``a_k^2`` starts at ``init`` (1: weight 1,
    equal weighting at the first step).

    Args:
        num_tasks: K.
        form: ``liebel`` or ``paper``.
        floor: lower bound of ``a_k^2`` for ``form = "paper"`` (> 1/e); unused by ``liebel``.
        init: initial ``a_k^2`` (> 0; > ``floor`` for ``paper``).

    Raises:
        ValueError: unknown ``form``, ``floor <= 1/e``, or ``init`` outside its domain.
    """

    name = "ruw"

    def __init__(self, num_tasks: int, *, form: str = "liebel", floor: float = 0.5,
                 init: float = 1.0) -> None:
        super().__init__(num_tasks)
        if form not in RUW_FORMS:
            raise ValueError(f"{self.name}: form must be one of {RUW_FORMS}; got {form!r}")
        self.form, self.floor = form, float(floor)
        if form == "paper":
            if not self.floor > PAPER_FLOOR_MIN:
                raise ValueError(f"{self.name}: floor must be > 1/e = {PAPER_FLOOR_MIN:.4f} (log(1 + log a^2) "
                                 f"is undefined below); got {floor}")
            if not init > self.floor:
                raise ValueError(f"{self.name}: init is the initial a^2 and must be > floor = {self.floor} "
                                 f"for form 'paper'; got {init}")
            start = _inverse_softplus(float(init) - self.floor)
        else:
            if not init > 0:
                raise ValueError(f"{self.name}: init is the initial a^2 and must be > 0; got {init}")
            start = math.log(float(init))
        self.raw = nn.Parameter(torch.full((self.num_tasks,), start))  # (K,) t_k or p_k

    def variances(self) -> Tensor:
        """``a_k^2`` (the inverse weights), (K,), with gradient."""
        if self.form == "paper":
            return self.floor + F.softplus(self.raw)
        return torch.exp(self.raw)

    def _ruw_terms(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """``(sum_k L_k / a_k^2 + regulariser_k, log a_k)``; the second is (K,)."""
        if self.form == "paper":
            v = self.variances().to(losses.dtype)  # (K,)
            log_v = torch.log(v)  # (K,) log a^2 > log floor > -1
            reg = torch.log1p(log_v)  # (K,) log(1 + log a^2)
        else:
            log_v = self.raw.to(losses.dtype)  # (K,) log a^2
            v = torch.exp(log_v)
            reg = F.softplus(log_v)  # (K,) log(1 + a^2)
        return (losses / v + reg).sum(), 0.5 * log_v

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        return self._ruw_terms(losses)[0]

    def weights(self) -> list[float]:
        return [float(w) for w in 1.0 / self.variances().detach()]


@register_weighting
class RestrainedRevisedUncertaintyWeighting(RevisedUncertaintyWeighting):
    """Restrained RUW (RRUW), seed 003's Eq. 4: RUW plus a restraint on the alphas.

    Song et al. (2022), Eq. 4, with ``a_k`` the paper's alpha (weight ``1 / a_k^2``):

        ``L = sum_k [L_k / a_k^2 + reg(a_k)] + |phi - sum_k |log a_k||``,  ``phi = 1``.

    The restraint takes ``log a_k`` (half of ``log a_k^2``): a single task that carries the
    whole restraint sits at ``|log a| = phi``, weight ``e^(-2 phi)`` (``e^-2`` for phi = 1).
    ``reg`` and the parameterisation of ``a_k`` are those of the chosen RUW ``form``.

    Args:
        num_tasks: K.
        phi: target of ``sum_k |log a_k|``.
        form, floor, init: as :class:`RevisedUncertaintyWeighting`.
    """

    name = "rruw"

    def __init__(self, num_tasks: int, *, phi: float = 1.0, form: str = "liebel", floor: float = 0.5,
                 init: float = 1.0) -> None:
        super().__init__(num_tasks, form=form, floor=floor, init=init)
        self.phi = float(phi)

    def restraint(self, log_alpha: Tensor) -> Tensor:
        """``|phi - sum_k |log a_k||`` for ``log_alpha`` (K,)."""
        return (self.phi - log_alpha.abs().sum()).abs()

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        ruw, log_alpha = self._ruw_terms(losses)
        return ruw + self.restraint(log_alpha)


@register_weighting
class DynamicWeightAverage(Weighting):
    """Dynamic Weight Average (DWA).

    Liu, Johns & Davison (2019), "End-to-End Multi-Task Learning with Attention", CVPR,
    Eq. 7:

        ``w_k(t) = K exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T)``,
        ``r_k(t-1) = L_k(t-1) / L_k(t-2)``,   ``L = sum_k w_k(t) L_k``,

    where, with ``per = "epoch"`` (default), ``L_k(t)`` is task k's mean loss over epoch ``t``
    (given to :meth:`end_epoch`) and ``w_k = 1`` for epochs 0 and 1, which have no two previous
    epochs. Seed 003 (Song et al. 2022, Eq. 3) calls ``t`` "an iteration index": ``per =
    "step"`` reads it as the training step, ``L_k(t)`` the loss of one mini-batch (weights 1
    for the first two steps). The weights are constants (no gradient). A previous loss of 0 is
    clamped to 1e-12 to keep ``r`` finite. The loss history is part of ``state_dict``
    (``get_extra_state``), so a resumed run continues with the same weights.

    Args:
        num_tasks: K.
        T: temperature; larger is closer to equal weights.
        per: ``epoch`` or ``step``: what ``t`` counts.

    Raises:
        ValueError: ``T`` <= 0, or ``per`` not one of :data:`DWA_PER`.
    """

    name = "dwa"

    def __init__(self, num_tasks: int, *, T: float = 10.0, per: str = "epoch") -> None:  # noqa: N803
        super().__init__(num_tasks)
        if not T > 0:
            raise ValueError(f"{self.name}: temperature T must be > 0; got {T}")
        if per not in DWA_PER:
            raise ValueError(f"{self.name}: per must be one of {DWA_PER}; got {per!r}")
        self.T, self.per = float(T), per
        self.history: list[list[float]] = []
        self._recent: list[Tensor] = []  # per = "step": the last two steps' losses, (K,) each
        self._current = torch.ones(self.num_tasks)

    def dwa_weights(self, epoch: int) -> Tensor:
        """``w_k(epoch)``, (K,) float32, from the recorded epoch losses.

        Raises:
            ValueError: ``epoch`` >= 2 but fewer than ``epoch`` epochs were recorded.
        """
        if epoch < 2:
            return torch.ones(self.num_tasks)
        if len(self.history) < epoch:
            raise ValueError(
                f"{self.name}: epoch {epoch} needs the mean task losses of epochs {epoch - 2} and "
                f"{epoch - 1}, but end_epoch() was called {len(self.history)} times; call "
                f"end_epoch(mean_losses) once after every epoch"
            )
        prev = torch.tensor(self.history[epoch - 1], dtype=torch.float64)  # (K,) L(t-1)
        prev2 = torch.tensor(self.history[epoch - 2], dtype=torch.float64)  # (K,) L(t-2)
        ratio = prev / prev2.clamp_min(1e-12)  # (K,) r_k(t-1)
        return (self.num_tasks * torch.softmax(ratio / self.T, dim=0)).to(torch.float32)

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        if self.per == "step":
            if len(self._recent) < 2:
                w = torch.ones(self.num_tasks, dtype=torch.float64, device=losses.device)
            else:
                ratio = self._recent[-1] / self._recent[-2].clamp_min(1e-12)  # (K,) r_k(t-1)
                w = self.num_tasks * torch.softmax(ratio / self.T, dim=0)
            self._recent = [*self._recent[-1:], losses.detach().to(torch.float64)]
        else:
            w = self.dwa_weights(epoch)
        self._current = w.detach()
        return (w.to(losses) * losses).sum()

    def weights(self) -> list[float]:
        """The weights of the last :meth:`combine` call (ones before the first)."""
        return [float(v) for v in self._current]

    def end_epoch(self, epoch_losses: list[float]) -> None:
        """Append the epoch's mean loss per task to the history."""
        self.history.append(self._check_epoch_losses(epoch_losses))

    def get_extra_state(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.history], "current": self.weights(),
                "recent": [r.tolist() for r in self._recent]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.history = [list(h) for h in state["history"]]
        self._current = torch.tensor(state["current"], dtype=torch.float64)
        self._recent = [torch.tensor(r, dtype=torch.float64) for r in state.get("recent", [])]


@register_weighting
class DynamicRestrainedUncertaintyWeighting(Weighting):
    """Dynamic Restrained Uncertainty Weighting (DRUW), seed 003's Eq. 5: DWA plus RRUW.

    Song et al. (2022), Eq. 5: the weight on each task loss is the sum of the DWA weight
    (Eq. 3) and the RRUW weight ``1 / a_k^2``, with the RRUW regularisers and restraint:

        ``L = sum_k (w_k(t) + 1 / a_k^2) L_k + sum_k reg(a_k) + |phi - sum_k |log a_k||``

    with ``w_k(t)`` from :class:`DynamicWeightAverage` (constants) and ``a_k``, ``reg`` as in
    :class:`RestrainedRevisedUncertaintyWeighting` (same ``form``, ``floor``, ``init``).

    Args:
        num_tasks: K.
        T: DWA temperature (the paper: 10).
        per: what DWA's ``t`` counts, ``epoch`` or ``step`` (see :class:`DynamicWeightAverage`).
        phi: RRUW restraint target (the paper: 1).
        form, floor, init: as :class:`RevisedUncertaintyWeighting`.
    """

    name = "druw"

    def __init__(
        self, num_tasks: int, *, T: float = 10.0, per: str = "epoch", phi: float = 1.0,  # noqa: N803
        form: str = "liebel", floor: float = 0.5, init: float = 1.0,
    ) -> None:
        super().__init__(num_tasks)
        self.dwa = DynamicWeightAverage(num_tasks, T=T, per=per)
        self.rruw = RestrainedRevisedUncertaintyWeighting(num_tasks, phi=phi, form=form, floor=floor,
                                                          init=init)

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        dwa_total = self.dwa.combine(losses, epoch)  # sum_k w_k L_k
        return dwa_total + self.rruw.combine(losses, epoch)

    def weights(self) -> list[float]:
        return [a + b for a, b in zip(self.dwa.weights(), self.rruw.weights())]

    def end_epoch(self, epoch_losses: list[float]) -> None:
        """Append the epoch's mean loss per task to the DWA history."""
        self.dwa.end_epoch(epoch_losses)


def build_weighting(spec: str, num_tasks: int) -> Weighting:
    """Make a weighting from a spec string.

    Specs: ``equal``, ``fixed:w1,...,wK``, ``uw``, ``uw:init=0``, ``exvo``, ``ruw``,
    ``ruw:form=paper,floor=0.5``, ``rruw:phi=1``, ``dwa:T=5``, ``dwa:per=step``, ``druw:T=10,phi=1,form=liebel``.
    Options are the keyword-only arguments of the class named.

    Args:
        spec: the spec string.
        num_tasks: K, the number of task losses.

    Returns:
        The weighting module (put its parameters in the optimiser).

    Raises:
        ValueError: unknown name (the message lists the valid ones), unknown option, bad
            value, or a ``fixed`` weight count other than K.

    Example:
        >>> build_weighting("dwa:T=5", 2).T
        5.0
    """
    name, arg = parse_spec(spec)
    if name not in WEIGHTINGS:
        raise ValueError(
            f"unknown weighting {name!r} in spec {spec!r}; valid: {', '.join(sorted(WEIGHTINGS))}"
        )
    cls = WEIGHTINGS[name]
    if cls is FixedWeighting and not arg:
        raise ValueError(
            f"fixed needs one weight per task, e.g. 'fixed:{','.join(['1'] * int(num_tasks))}'"
        )
    return cls.from_arg(arg, num_tasks)


__all__: list[str] = [
    "WEIGHTINGS",
    "Weighting",
    "register_weighting",
    "build_weighting",
    "parse_spec",
    "EqualWeighting",
    "FixedWeighting",
    "UncertaintyWeighting",
    "ExvoWeighting",
    "RUW_FORMS",
    "DWA_PER",
    "RevisedUncertaintyWeighting",
    "RestrainedRevisedUncertaintyWeighting",
    "DynamicWeightAverage",
    "DynamicRestrainedUncertaintyWeighting",
]
