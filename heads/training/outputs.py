"""The outputs of a torch net: one per target, with its loss, label scaling, label tensors,
class weights and the Val scores that select the epoch.

Regression labels are mapped to [0, 1] (their known range, else the Train min / max) so that
every output mode (sigmoid, clamp, linear) fits every target; predictions are mapped back.
Targets named in ``TrainOptions.unscaled`` stay in their own units (a linear output).
Missing labels stay missing: each loss masks them per column.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from data.tasks import Target, Task
from heads.config import TrainOptions, parse_loss_spec
from heads.dataset import Dataset, labelled
from heads.scoring import score_target, score_task
from heads.training.losses import LOSSES, cross_entropy_loss, inverse_frequency_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    """One output of the net: a target of a task, with its loss and label scaling.

    Attributes:
        name: the net's task name (the target name, or ``task.target`` when names collide).
        task: experiment task name.
        target: the target.
        loss: ``ccc`` | ``mse`` | ``mae`` | ``ce``.
        lo, hi: regression label range mapped to [0, 1] (per column); None for classes.
    """

    name: str
    task: str
    target: Target
    loss: str
    lo: tuple[float, ...] | None = None
    hi: tuple[float, ...] | None = None

    @property
    def kind(self) -> str:
        return self.target.kind

    @property
    def dim(self) -> int:
        return self.target.num_outputs

    def spec(self) -> tuple[str, str, int]:
        return (self.name, self.kind, self.dim)


def make_outputs(tasks: Sequence[Task], ds: Dataset, train_rows: np.ndarray,
                 opts: TrainOptions) -> list[Output]:
    """One :class:`Output` per target, with its loss and its Train-fitted label range.

    Raises:
        ValueError: the loss spec names no target, or a classification target has < 2 classes.
    """
    default, named = parse_loss_spec(opts.loss)
    all_targets = [(t, tg) for t in tasks for tg in t.targets]
    counts: dict[str, int] = {}
    for _, tg in all_targets:
        counts[tg.name] = counts.get(tg.name, 0) + 1
    names = {tg.name for _, tg in all_targets} | {t.name for t in tasks}
    unknown = sorted(set(named) - names)
    if unknown:
        raise ValueError(f"loss names {unknown}, which are not targets here; targets: "
                         f"{[tg.name for _, tg in all_targets]}")
    unknown = sorted(set(opts.unscaled) - names)
    if unknown:
        raise ValueError(f"unscaled names {unknown}, which are not targets here; targets: "
                         f"{[tg.name for _, tg in all_targets]}")
    outputs = []
    for task, tg in all_targets:
        name = tg.name if counts[tg.name] == 1 else f"{task.name}.{tg.name}"
        if tg.kind == "classification":
            if tg.num_outputs < 2:
                raise ValueError(f"target {tg.name!r} has {tg.num_outputs} class(es); need 2 or more")
            outputs.append(Output(name, task.name, tg, "ce"))
            continue
        loss = named.get(tg.name, named.get(task.name, "mae" if tg.metric == "mae" else default))
        y = ds.truths[task.name][tg.name][train_rows]  # (n_train, k)
        if tg.name in opts.unscaled or task.name in opts.unscaled:
            if tg.value_range is not None:
                raise ValueError(f"target {tg.name!r} has a known range {tg.value_range}: it is "
                                 f"scaled by it, leave it out of unscaled")
            lo, hi = np.zeros(y.shape[1]), np.ones(y.shape[1])  # the identity: label units
        elif tg.value_range is not None:
            lo = np.full(y.shape[1], tg.value_range[0], dtype=np.float64)
            hi = np.full(y.shape[1], tg.value_range[1], dtype=np.float64)
        else:  # unknown range: the Train range, so that sigmoid / clamp outputs can reach it
            with np.errstate(all="ignore"):
                lo = np.nan_to_num(np.nanmin(y, axis=0).astype(np.float64), nan=0.0) if len(y) else np.zeros(y.shape[1])
                hi = np.nan_to_num(np.nanmax(y, axis=0).astype(np.float64), nan=1.0) if len(y) else np.ones(y.shape[1])
            hi = np.where(hi - lo > 1e-12, hi, lo + 1.0)
        outputs.append(Output(name, task.name, tg, loss, tuple(lo.tolist()), tuple(hi.tolist())))
    return outputs


def resolve_chain(chain: Sequence[str], outputs: Sequence[Output]) -> tuple[str, ...]:
    """Map chain entries (output, task or target names) to output names.

    Raises:
        ValueError: an entry matches no output or several (lists the output names).
    """
    resolved = []
    for entry in chain:
        hits = [o.name for o in outputs if o.name == entry]
        hits = hits or [o.name for o in outputs if o.task == entry]
        hits = hits or [o.name for o in outputs if o.target.name == entry]
        if len(hits) != 1:
            raise ValueError(f"chain entry {entry!r} must name exactly one output; outputs: "
                             f"{[o.name for o in outputs]} (tasks: {sorted({o.task for o in outputs})})")
        resolved.append(hits[0])
    return tuple(resolved)



def scaled_regression(o: Output, y: np.ndarray) -> np.ndarray:
    return (y - np.asarray(o.lo, np.float32)) / (np.asarray(o.hi, np.float32) - np.asarray(o.lo, np.float32))


def to_label_space(o: Output, raw: np.ndarray) -> np.ndarray:
    """Net output -> prediction: regression (n, k) back to label units (clipped to a known
    range), classification logits (n, C) -> class codes (n,)."""
    if o.kind == "classification":
        return raw.argmax(axis=1).astype(np.int64)
    p = raw * (np.asarray(o.hi) - np.asarray(o.lo)) + np.asarray(o.lo)
    if o.target.value_range is not None:
        p = np.clip(p, *o.target.value_range)
    return p.astype(np.float32)


class Labels:
    """Per-output label tensors on the device: regression ``(y, mask)`` with missing values
    zeroed and masked out; classification codes with -1 for missing."""

    def __init__(self, outputs: Sequence[Output], ds: Dataset, device: torch.device) -> None:
        self.y: dict[str, torch.Tensor] = {}
        self.mask: dict[str, torch.Tensor] = {}
        self._valid: dict[str, np.ndarray] = {}
        for o in outputs:
            truth = ds.truths[o.task][o.target.name]
            self._valid[o.name] = labelled(o.kind, truth, every_column=False)
            if o.kind == "classification":
                self.y[o.name] = torch.as_tensor(truth, dtype=torch.long, device=device)  # (n,)
            else:
                scaled = scaled_regression(o, truth.astype(np.float32))  # (n, k)
                valid = np.isfinite(scaled)
                self.y[o.name] = torch.as_tensor(np.where(valid, scaled, 0.0), dtype=torch.float32,
                                                 device=device)
                self.mask[o.name] = torch.as_tensor(valid, device=device)

    def valid_rows(self, name: str) -> np.ndarray:
        """(n,) bool: rows with at least one label of this output (the losses mask per column)."""
        return self._valid[name]


def output_losses(outputs: Sequence[Output], pred: dict[str, torch.Tensor], labels: Labels,
                  rows: torch.Tensor, class_weights: dict[str, torch.Tensor | None],
                  label_smoothing: float) -> torch.Tensor:
    """The loss of every output on a batch, (K,); missing labels are masked per column."""
    losses = []
    for o in outputs:
        y = labels.y[o.name][rows]
        if o.kind == "classification":
            losses.append(cross_entropy_loss(pred[o.name], y, class_weights=class_weights[o.name],
                                             label_smoothing=label_smoothing))
        else:
            losses.append(LOSSES[o.loss](pred[o.name], y, labels.mask[o.name][rows]))
    return torch.stack(losses)  # (K,)


def train_class_weights(outputs: Sequence[Output], ds: Dataset, train_rows: np.ndarray,
                        device: torch.device, enabled: bool) -> dict[str, torch.Tensor | None]:
    """Normalised inverse Train frequency per class (``heads.training.losses.inverse_frequency_weights``);
    a class absent from Train counts as 1 clip."""
    weights: dict[str, torch.Tensor | None] = {}
    for o in outputs:
        if o.kind != "classification" or not enabled:
            weights[o.name] = None
            continue
        y = ds.truths[o.task][o.target.name][train_rows]
        counts = np.bincount(y[y >= 0], minlength=o.dim)[:o.dim]
        if (counts == 0).any():
            absent = [o.target.classes[i] for i in np.flatnonzero(counts == 0)]
            log.warning("%s: classes %s have no Train clip; counted as 1 for the class weights",
                        o.name, absent)
        weights[o.name] = inverse_frequency_weights(np.maximum(counts, 1).tolist()).to(device)
    return weights



def val_scores(outputs: Sequence[Output], tasks: Sequence[Task], ds: Dataset, rows: np.ndarray,
               preds: dict[str, np.ndarray]) -> dict[str, tuple[float, bool]]:
    """Val headline per task (or per target when only some of a task's targets are trained):
    ``name -> (score, greater_is_better)``."""
    out: dict[str, tuple[float, bool]] = {}
    by_task = {t.name: t for t in tasks}
    for task_name in dict.fromkeys(o.task for o in outputs):
        task = by_task[task_name]
        mine = [o for o in outputs if o.task == task_name]
        truths = ds.truths[task_name]
        if len(mine) == len(task.targets):
            s = score_task(task, {o.target.name: truths[o.target.name][rows] for o in mine},
                           {o.target.name: preds[o.name] for o in mine})
            out[task_name] = (float(s["score"]), task.headline != "mae")
        else:
            for o in mine:
                s = score_target(o.target, truths[o.target.name][rows], preds[o.name])
                out[o.name] = (float(s["score"]), o.target.metric != "mae")
    return out


def selection_score(scores: dict[str, tuple[float, bool]]) -> float:
    """Mean over tasks of the headline, MAE negated (higher is better); NaN ignored; -inf if
    every score is NaN."""
    values = [s if greater else -s for s, greater in scores.values() if np.isfinite(s)]
    return float(np.mean(values)) if values else float("-inf")


__all__ = ["Output", "make_outputs", "resolve_chain", "scaled_regression", "to_label_space",
           "Labels", "output_losses", "train_class_weights", "val_scores", "selection_score"]
