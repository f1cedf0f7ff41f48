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
"""
from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WEIGHTINGS: dict[str, type["Weighting"]] = {}
"""Weighting name -> class; :func:`build_weighting` makes instances from spec strings."""


def register_weighting(cls: type["Weighting"]) -> type["Weighting"]:
    """Class decorator: put a weighting into :data:`WEIGHTINGS` under its ``name``.

    Raises:
        ValueError: the name is registered already.
    """
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


@register_weighting
class RevisedUncertaintyWeighting(Weighting):
    """Revised uncertainty weighting (RUW), as used by seed 003.

    Song et al. (2022), "Dynamic Restrained Uncertainty Weighting Loss for Multitask Learning
    of Vocal Expression", arXiv:2206.11049, Sec. 2 (RUW; FIELD_NOTES section 4):

        ``L = sum_k L_k / v_k + log(1 + log v_k)``,  ``v_k = s_k^2``, weight ``1 / v_k``.

    Keeping it defined: ``log(1 + log v)`` needs ``v > 1/e``, and on that whole domain the
    objective is unbounded below (``log(1 + log v) -> -inf`` as ``v -> 1/e``), so the learned
    variances are parameterised as ``v_k = 1 + softplus(p_k) > 1``. Then ``log v_k > 0``, the
    regulariser is >= 0, and the optimum is finite: ``v_k = 1`` (the boundary) when
    ``L_k <= 1``, else the root of ``v / (1 + log v) = L_k``. Every weight is at most 1.

    Args:
        num_tasks: K.
        init: initial ``v_k`` (> 1); ``p_k`` starts at ``softplus^-1(init - 1)``.

    Raises:
        ValueError: ``init`` <= 1.
    """

    name = "ruw"

    def __init__(self, num_tasks: int, *, init: float = 2.0) -> None:
        super().__init__(num_tasks)
        if not init > 1.0:
            raise ValueError(f"{self.name}: init is the initial s^2 and must be > 1; got {init}")
        self.raw = nn.Parameter(torch.full((self.num_tasks,), _inverse_softplus(init - 1.0)))

    def variances(self) -> Tensor:
        """``v_k = s_k^2 = 1 + softplus(p_k)``, (K,), with gradient."""
        return 1.0 + F.softplus(self.raw)

    def _ruw_terms(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """``(sum_k L_k / v_k + log(1 + log v_k), log v_k)``; the second is (K,)."""
        v = self.variances().to(losses.dtype)  # (K,)
        log_v = torch.log(v)  # (K,), > 0
        return (losses / v + torch.log1p(log_v)).sum(), log_v

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        return self._ruw_terms(losses)[0]

    def weights(self) -> list[float]:
        return [float(w) for w in 1.0 / self.variances().detach()]


@register_weighting
class RestrainedRevisedUncertaintyWeighting(RevisedUncertaintyWeighting):
    """Restrained RUW (RRUW): RUW plus a restraint on the total log variance.

    Song et al. (2022), arXiv:2206.11049, Sec. 2 (FIELD_NOTES section 4):

        ``L = sum_k [L_k / v_k + log(1 + log v_k)] + |phi - sum_k |log v_k||``,  ``phi = 1``.

    ``v_k = s_k^2 = 1 + softplus(p_k)`` as in :class:`RevisedUncertaintyWeighting`; the
    restraint uses ``log v_k = log s_k^2``. It keeps the variances from all drifting together
    (their log sum is pulled towards ``phi``), which bounds the total scale of the weights.

    Args:
        num_tasks: K.
        phi: target of ``sum_k |log v_k|``.
        init: initial ``v_k`` (> 1).
    """

    name = "rruw"

    def __init__(self, num_tasks: int, *, phi: float = 1.0, init: float = 2.0) -> None:
        super().__init__(num_tasks, init=init)
        self.phi = float(phi)

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        ruw, log_v = self._ruw_terms(losses)
        return ruw + (self.phi - log_v.abs().sum()).abs()


@register_weighting
class DynamicWeightAverage(Weighting):
    """Dynamic Weight Average (DWA).

    Liu, Johns & Davison (2019), "End-to-End Multi-Task Learning with Attention", CVPR,
    Eq. 7:

        ``w_k(t) = K exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T)``,
        ``r_k(t-1) = L_k(t-1) / L_k(t-2)``,   ``L = sum_k w_k(t) L_k``,

    where ``L_k(t)`` is task k's mean loss over epoch ``t`` (given to :meth:`end_epoch`).
    ``w_k = 1`` for epochs 0 and 1, which have no two previous epochs. The weights are
    constants (no gradient). A previous loss of 0 is clamped to 1e-12 to keep ``r`` finite.
    The loss history is part of ``state_dict`` (``get_extra_state``), so a resumed run
    continues with the same weights.

    Args:
        num_tasks: K.
        T: temperature; larger is closer to equal weights.

    Raises:
        ValueError: ``T`` <= 0.
    """

    name = "dwa"

    def __init__(self, num_tasks: int, *, T: float = 10.0) -> None:  # noqa: N803 (paper name)
        super().__init__(num_tasks)
        if not T > 0:
            raise ValueError(f"{self.name}: temperature T must be > 0; got {T}")
        self.T = float(T)
        self.history: list[list[float]] = []
        self._current = [1.0] * self.num_tasks

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
        w = self.dwa_weights(epoch)
        self._current = w.tolist()
        return (w.to(losses) * losses).sum()

    def weights(self) -> list[float]:
        """The weights of the last :meth:`combine` call (ones before the first)."""
        return list(self._current)

    def end_epoch(self, epoch_losses: list[float]) -> None:
        """Append the epoch's mean loss per task to the history."""
        self.history.append(self._check_epoch_losses(epoch_losses))

    def get_extra_state(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.history], "current": list(self._current)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.history = [list(h) for h in state["history"]]
        self._current = list(state["current"])


@register_weighting
class DynamicRestrainedUncertaintyWeighting(Weighting):
    """Dynamic Restrained Uncertainty Weighting (DRUW): DWA weights plus RRUW weights.

    Song et al. (2022), arXiv:2206.11049 (seed 003; FIELD_NOTES section 4): the weight on each
    task loss is the sum of the DWA weight and the RRUW weight, with the RRUW regularisers:

        ``L = sum_k (w_k(t) + 1 / v_k) L_k + sum_k log(1 + log v_k) + |phi - sum_k |log v_k||``

    with ``w_k(t)`` from :class:`DynamicWeightAverage` (constants) and ``v_k = s_k^2 =
    1 + softplus(p_k)`` learned as in :class:`RestrainedRevisedUncertaintyWeighting`.

    Args:
        num_tasks: K.
        T: DWA temperature.
        phi: RRUW restraint target.
        init: initial ``v_k`` (> 1).
    """

    name = "druw"

    def __init__(
        self, num_tasks: int, *, T: float = 10.0, phi: float = 1.0, init: float = 2.0  # noqa: N803
    ) -> None:
        super().__init__(num_tasks)
        self.dwa = DynamicWeightAverage(num_tasks, T=T)
        self.rruw = RestrainedRevisedUncertaintyWeighting(num_tasks, phi=phi, init=init)

    def _combine(self, losses: Tensor, epoch: int) -> Tensor:  # losses (K,)
        dwa_total = self.dwa.combine(losses, epoch)  # sum_k w_k L_k
        return dwa_total + self.rruw.combine(losses, epoch)

    def weights(self) -> list[float]:
        return [a + b for a, b in zip(self.dwa.weights(), self.rruw.weights())]

    def end_epoch(self, epoch_losses: list[float]) -> None:
        """Append the epoch's mean loss per task to the DWA history."""
        self.dwa.end_epoch(epoch_losses)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``'name:arg'`` into ``(name, arg)``; ``arg`` is ``''`` when absent."""
    name, _, arg = spec.strip().partition(":")
    return name.strip().lower(), arg.strip()


def build_weighting(spec: str, num_tasks: int) -> Weighting:
    """Make a weighting from a spec string.

    Specs: ``equal``, ``fixed:w1,...,wK``, ``uw``, ``uw:init=0``, ``exvo``, ``ruw``,
    ``rruw:phi=1``, ``dwa:T=5``, ``druw:T=10,phi=1``. Options are the keyword-only arguments
    of the class named.

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
    "RevisedUncertaintyWeighting",
    "RestrainedRevisedUncertaintyWeighting",
    "DynamicWeightAverage",
    "DynamicRestrainedUncertaintyWeighting",
]
