"""The net contract: :class:`HeadNet`, the :data:`NETS` registry, :func:`build_net`, and the
public checks every net uses (task list, choices, output modes).

Every net is built from ``input_dim``, the task list and one small frozen config dataclass,
and returns ``dict[task name, Tensor (batch, out_dim)]``. A task is ``(name, kind, out_dim)``
with ``kind`` ``"regression"`` (outputs go through the config's ``output`` mode) or
``"classification"`` (raw logits; apply softmax / cross-entropy outside).

Two input kinds (class attribute ``input_kind``):

* ``"vector"``: ``net(x)``, x (batch, dim), e.g. openSMILE functionals or pooled SSL layers;
* ``"sequence"``: ``net(x, lengths)``, x (batch, frames, dim) zero- or garbage-padded after
  ``lengths`` (batch,) true frames. Frames past a clip's length never influence its output.

The shared representation (seed 004's auxiliary heads read it): every net calls
:meth:`HeadNet.tap` in its forward with the representation its task layers share, pooled
``(batch, hidden_dim)`` and, where the net has one, per frame ``(batch, frames', hidden_dim)``
with its true lengths. ``hidden_dim`` and ``hidden_frames`` (whether frames are tapped) are
set by each net's constructor. Nothing is kept unless ``tapping`` is set (by
:mod:`heads.training.auxiliary`), so a plain forward is unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

from heads.config import OUTPUT_MODES

INPUT_KINDS = ("vector", "sequence")
REGRESSION = "regression"
CLASSIFICATION = "classification"
TASK_KINDS = (REGRESSION, CLASSIFICATION)

TaskSpec = tuple[str, str, int]

NETS: dict[str, type["HeadNet"]] = {}
"""Net name -> class; the CLI choices and the contract tests are generated from it."""


def register_net(cls: type["HeadNet"]) -> type["HeadNet"]:
    """Class decorator: put a net into :data:`NETS` under its ``name``.

    Raises:
        ValueError: the name is registered already.
    """
    if cls.name in NETS:
        raise ValueError(f"net name {cls.name!r} is registered twice")
    NETS[cls.name] = cls
    return cls


# -- helpers ---------------------------------------------------------------------------------
def check_tasks(tasks: Sequence[Sequence[Any]]) -> tuple[TaskSpec, ...]:
    out: list[TaskSpec] = []
    for task in tasks:
        if len(task) != 3:
            raise ValueError(f"a task is (name, kind, out_dim); got {task!r}")
        name, kind, dim = str(task[0]), str(task[1]), int(task[2])
        if kind not in TASK_KINDS:
            raise ValueError(f"task {name!r}: kind must be one of {TASK_KINDS}; got {kind!r}")
        if dim < 1 or (kind == CLASSIFICATION and dim < 2):
            raise ValueError(f"task {name!r}: out_dim {dim} is too small for {kind}")
        out.append((name, kind, dim))
    names = [t[0] for t in out]
    if not out or len(set(names)) != len(names):
        raise ValueError(f"tasks must be a non-empty list with unique names; got {names}")
    return tuple(out)


def check_choice(field: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"{field} must be one of {tuple(valid)}; got {value!r}")


def regression_output(y: Tensor, mode: str) -> Tensor:
    """Apply a regression output mode (see :data:`OUTPUT_MODES`) elementwise."""
    if mode == "sigmoid":
        return torch.sigmoid(y)
    if mode == "clamp":
        return y.clamp(0.0, 1.0)
    if mode == "clamp-st":
        return y + (y.clamp(0.0, 1.0) - y).detach()
    if mode == "linear":
        return y
    raise ValueError(f"output must be one of {OUTPUT_MODES}; got {mode!r}")


def finish_outputs(tasks: Sequence[TaskSpec], raw: Sequence[Tensor], mode: str,
                   linear: Sequence[str] = ()) -> dict[str, Tensor]:
    """Per-task raw outputs -> dict, regression through ``mode`` (``linear`` for the tasks
    named in ``linear``), logits untouched."""
    return {
        name: regression_output(y, "linear" if name in linear else mode) if kind == REGRESSION else y
        for (name, kind, _), y in zip(tasks, raw)
    }


class HeadNet(nn.Module):
    """Base class of the registered nets.

    Args:
        input_dim: feature dimension D.
        tasks: ``(name, kind, out_dim)`` per task; kind ``regression`` or ``classification``.
        config: an instance of ``config_type``; ``None``: its defaults.

    Raises:
        ValueError: invalid ``input_dim``, task list or config value (named in the message).
        TypeError: ``config`` is not a ``config_type``.

    Attributes:
        name: registry key.
        config_type: the frozen dataclass of hyperparameters.
        input_kind: ``"vector"`` (``forward(x)``) or ``"sequence"`` (``forward(x, lengths)``).
        input_dim: feature dimension D.
        tasks: the validated ``(name, kind, out_dim)`` tuples, in output order.
        config: the config used (save ``dataclasses.asdict(net.config)`` with a checkpoint).
    """

    name: ClassVar[str]
    config_type: ClassVar[type]
    input_kind: ClassVar[str]
    hidden_dim: int = 0
    hidden_frames: bool = False
    tapping: bool = False

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]], config: Any = None) -> None:
        super().__init__()
        if int(input_dim) < 1:
            raise ValueError(f"input_dim must be >= 1; got {input_dim}")
        self.input_dim = int(input_dim)
        self.tasks = check_tasks(tasks)
        self.config = self.config_type() if config is None else config
        if not isinstance(self.config, self.config_type):
            raise TypeError(f"{self.name} needs a {self.config_type.__name__}; got {config!r}")
        if hasattr(self.config, "output"):
            check_choice(f"{self.name}: output", self.config.output, OUTPUT_MODES)

    def tap(self, pooled: Tensor | None, frames: Tensor | None = None,
            lengths: Tensor | None = None) -> None:
        """Keep the shared representation of this forward in ``tapped`` when ``tapping``.

        Args:
            pooled: (B, hidden_dim), or None when only frames are shared (their mean over true
                frames is the pooled one, :func:`heads.grl.masked_mean_pool`).
            frames: (B, T', hidden_dim) per-frame representation, or None.
            lengths: (B,) true frames of ``frames``.
        """
        if self.tapping:
            self.tapped = {"pooled": pooled, "frames": frames, "lengths": lengths}

    def output_mode(self, task: str) -> str:
        """The output mode applied to regression task ``task``: ``linear`` when the net names
        it in ``linear_outputs`` (nets with that setting), else the config's ``output``
        (``linear`` for a net without one)."""
        if task in getattr(self, "linear_outputs", ()):
            return "linear"
        return getattr(self.config, "output", "linear")

    def _task_linears(self, in_dim: int) -> nn.ModuleList:
        return nn.ModuleList(nn.Linear(in_dim, k) for _, _, k in self.tasks)

    def _check_vector(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"x must be (batch, {self.input_dim}); got {tuple(x.shape)}")


def build_net(name: str, input_dim: int, tasks: Sequence[Sequence[Any]], **options: Any) -> HeadNet:
    """Make a registered net; ``options`` are fields of its config dataclass.

    Lists (as TOML gives them) become tuples.

    Args:
        name: a key of :data:`NETS`.
        input_dim: feature dimension D.
        tasks: ``(name, kind, out_dim)`` per task.
        **options: config fields, e.g. ``output="clamp"``, ``chain=("country", "type")``.

    Returns:
        The net (``net.input_kind`` says how to call it).

    Raises:
        ValueError: unknown net or option (the message lists the valid ones), or an invalid
            task list or option value.
    """
    if name not in NETS:
        raise ValueError(f"unknown net {name!r}; valid: {', '.join(sorted(NETS))}")
    cls = NETS[name]
    valid = [f.name for f in dataclasses.fields(cls.config_type)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"net {name!r}: unknown option(s) {unknown}; valid: {', '.join(valid)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return cls(input_dim, tasks, cls.config_type(**values))




__all__ = ["NETS", "HeadNet", "TaskSpec", "REGRESSION", "CLASSIFICATION", "TASK_KINDS", "INPUT_KINDS",
           "register_net", "build_net", "check_tasks", "check_choice", "regression_output",
           "finish_outputs"]
