"""Train the torch heads of :mod:`heads.nets` on cached features: the training loop.

:func:`fit_torch` is the fit function :mod:`heads.experiment` calls for every name in
:data:`TORCH_HEADS` (``fit(cfg, ds, tasks, seed) -> (preds, info, excluded)``, one model for
all tasks). What it does, top to bottom:

1. options: ``cfg.options`` -> :class:`TrainOptions` (unknown keys fail, naming the valid ones);
2. outputs: one net output per target of every task (``avb-high`` -> ``high``; ``exvo`` ->
   ``emotion``, ``country``, ``age``), each with its loss (CCC, MSE, MAE or cross-entropy
   with normalised inverse-frequency class weights and label smoothing);
3. inputs: vectors standardised with the Train mean / std, or frame sequences
   (:mod:`heads.sequences`) standardised per dimension over the Train frames and padded per
   batch; regression labels mapped to [0, 1] (their known range, else the Train min / max)
   so that every output mode (sigmoid, clamp, linear) fits every target; predictions are
   mapped back. Missing labels stay missing: each loss masks them per column;
4. the loop: shuffled mini-batches (a seeded generator), per-output losses combined by the
   weighting strategy, Adam / AdamW, optional cosine schedule with warm-up; after each epoch
   the Val headline score of every task, the task weights and the losses go to the log and to
   ``curves_seed<k>.json``; early stopping on the mean Val headline (MAE counts negated) with
   patience; the best state is restored and saved to ``model_seed<k>.pt`` with its config.

Same seed, same data, CPU: the same numbers (``torch.manual_seed`` for the weights, a
``torch.Generator`` for the batch order). CUDA is used when present (``device="auto"``); on
the CPU, training uses ``cfg.n_jobs`` intra-op threads (``train --jobs``, default 1: on a busy
2-core machine more threads made small steps several times slower), restored afterwards.

Example (a run through the experiment runner)::

    cfg = ExperimentConfig(workdir="runs/avb", task="avb-high,avb-type", features=("ssl:...",),
                           head="mlp-mtl", layer=12, options={"weighting": "uw", "epochs": 20})
    run_experiment(cfg)
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.tasks import Target, Task
from heads.evaluate import score_target, score_task
from heads.experiment import Dataset, ExperimentConfig, build_dataset, run_dir_of
from heads.losses import LOSSES, cross_entropy_loss, inverse_frequency_weights
from heads.nets import NETS, OUTPUT_MODES, build_net
from heads.sequences import (InMemorySequences, SequenceSet, StoreSequences, fit_frame_stats,
                             load_sequences, pad_batch)
from heads.weighting import build_weighting

log = logging.getLogger(__name__)

TORCH_HEADS = NETS
"""Torch head name -> net class (the registry of :mod:`heads.nets` itself)."""

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("none", "cosine")
DEVICES = ("auto", "cpu", "cuda")
REGRESSION_LOSSES = ("ccc", "mse", "mae")
EVAL_BATCH_VECTORS = 8192


# ---------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class TrainOptions:
    """Settings of the training loop (``ExperimentConfig.options``; recipes' ``[train]``).

    Attributes:
        weighting: multitask weighting spec for :func:`heads.weighting.build_weighting`
            (``equal``, ``fixed:5,0.05,0.05``, ``uw``, ``exvo``, ``ruw``, ``rruw``, ``dwa``,
            ``druw``); one weight per output (target).
        loss: regression loss: ``ccc`` | ``mse`` | ``mae`` for targets scored by CCC, plus
            ``TARGET=LOSS`` items, e.g. ``"ccc,age=mse"``. Targets scored by MAE (age) use
            ``mae`` unless named. Classification always uses cross-entropy.
        output: regression output mode (``sigmoid``, ``clamp``, ``clamp-st``, ``linear``);
            None: the head's default.
        chain: intermediate tasks (``mlp-mtl``), by task or target name.
        epochs: maximum number of epochs.
        lr: learning rate.
        weight_decay: decoupled (``adamw``) or L2 (``adam``) weight decay on the net; the
            weighting's own parameters get none.
        optimizer: ``adam`` | ``adamw``.
        batch_size: clips per step.
        patience: epochs without a better Val score before stopping; 0 never stops early.
        schedule: ``none`` | ``cosine`` (per step, to 0 at the last epoch).
        warmup: epochs of linear learning-rate warm-up (fractions allowed).
        label_smoothing: cross-entropy label smoothing.
        class_weights: normalised inverse Train frequency weights in the cross-entropy.
        frames_field: ragged field a sequence head reads (``frames_l12``, ``logmel``, ``lld``);
            None: ``frames_l<layer>`` or the set's only ragged field.
        device: ``auto`` (CUDA when present) | ``cpu`` | ``cuda``.
        separate: one net per target instead of one multitask net (single-task baselines).
        restore_best: restore the state of the best Val epoch (else keep the last).
        max_memory_gb: frame sequences larger than this are streamed from the store.
        net: options of the net's config dataclass (e.g. ``{"pooling": "last"}``).
    """

    weighting: str = "equal"
    loss: str = "ccc"
    output: str | None = None
    chain: tuple[str, ...] = ()
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    batch_size: int = 32
    patience: int = 5
    schedule: str = "none"
    warmup: float = 0.0
    label_smoothing: float = 0.0
    class_weights: bool = True
    frames_field: str | None = None
    device: str = "auto"
    separate: bool = False
    restore_best: bool = True
    max_memory_gb: float = 8.0
    net: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> "TrainOptions":
        """Validated options from a plain dict (CLI flags, TOML).

        Raises:
            ValueError: unknown key (lists the valid ones), wrong type, or a value outside
                its choices (names the option, the choices and the value).
        """
        options = dict(options or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {', '.join(valid)}")
        if isinstance(options.get("chain"), str):
            options["chain"] = tuple(c.strip() for c in options["chain"].split(",") if c.strip())
        elif options.get("chain") is not None:
            options["chain"] = tuple(str(c) for c in options["chain"])
        types = {"epochs": int, "batch_size": int, "patience": int, "lr": float,
                 "weight_decay": float, "warmup": float, "label_smoothing": float,
                 "max_memory_gb": float}
        for key, typ in types.items():
            if key in options:
                value = options[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                        typ is int and float(value) != int(value)):
                    raise ValueError(f"option {key} must be {'an integer' if typ is int else 'a number'}; "
                                     f"got {value!r}")
                options[key] = typ(value)
        for key in ("class_weights", "separate", "restore_best"):
            if key in options and not isinstance(options[key], bool):
                raise ValueError(f"option {key} must be true or false; got {options[key]!r}")
        if "net" in options and not isinstance(options["net"], dict):
            raise ValueError(f"option net must be a table of net settings; got {options['net']!r}")
        opts = cls(**options)
        opts.check()
        return opts

    def check(self) -> None:
        """Raise ValueError naming the first invalid value."""
        choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "device": DEVICES}
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise ValueError(f"option {key} must be one of {valid}; got {getattr(self, key)!r}")
        if self.output is not None and self.output not in OUTPUT_MODES:
            raise ValueError(f"option output must be one of {OUTPUT_MODES}; got {self.output!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1; got {self.epochs}, {self.batch_size}")
        if self.patience < 0 or self.warmup < 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("patience, warmup and weight_decay must be >= 0 and lr > 0; got "
                             f"{self.patience}, {self.warmup}, {self.weight_decay}, {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"option label_smoothing must be in [0, 1); got {self.label_smoothing}")
        parse_loss_spec(self.loss)
        if self.separate and self.chain:
            raise ValueError("option chain needs one multitask net; it cannot go with separate = true")


def parse_loss_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"ccc"`` -> ("ccc", {}); ``"ccc,age=mse"`` -> ("ccc", {"age": "mse"}).

    Raises:
        ValueError: a loss that is not a regression loss (lists them).

    Example:
        >>> parse_loss_spec("mse, age=mae")
        ('mse', {'age': 'mae'})
    """
    default, named = "ccc", {}
    for item in (s.strip() for s in str(spec).split(",")):
        if not item:
            continue
        name, sep, loss = (p.strip() for p in item.partition("="))
        loss = loss if sep else name
        if loss not in REGRESSION_LOSSES:
            raise ValueError(f"loss {loss!r} in {spec!r} is not a regression loss; valid: "
                             f"{', '.join(REGRESSION_LOSSES)} (classification always uses "
                             f"cross-entropy)")
        if sep:
            named[name] = loss
        else:
            default = loss
    return default, named


# ---------------------------------------------------------------------------------- outputs
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
    unknown = sorted(set(named) - {tg.name for _, tg in all_targets} - {t.name for t in tasks})
    if unknown:
        raise ValueError(f"loss names {unknown}, which are not targets here; targets: "
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
        if tg.value_range is not None:
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


def _scaled_regression(o: Output, y: np.ndarray) -> np.ndarray:
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


# ---------------------------------------------------------------------------------- inputs
@dataclass
class SequenceDataset(Dataset):
    """A :class:`~heads.experiment.Dataset` of a sequence head: ``sequences`` aligned to ids
    (``X`` is empty)."""

    sequences: SequenceSet | None = None


class Inputs:
    """Standardised net inputs for rows of the dataset, built per batch.

    Vectors live on the device whole (standardised once); sequences are standardised and
    padded per batch (see :mod:`heads.sequences`).
    """

    def __init__(self, kind: str, device: torch.device, *, X: np.ndarray | None = None,
                 seqs: SequenceSet | None = None, train_rows: np.ndarray | None = None) -> None:
        self.kind, self.device = kind, device
        rows = np.asarray(train_rows if train_rows is not None else [], dtype=np.int64)
        if kind == "vector":
            assert X is not None
            Xt = X[rows].astype(np.float64)
            self.mean_ = Xt.mean(axis=0) if len(rows) else np.zeros(X.shape[1])
            std = Xt.std(axis=0) if len(rows) else np.ones(X.shape[1])
            self.std_ = np.where(std < 1e-8, 1.0, std)
            Z = (X - self.mean_.astype(np.float32)) / self.std_.astype(np.float32)  # (n, D)
            self.X = torch.from_numpy(Z).to(device)
            self.dim = int(X.shape[1])
        else:
            assert seqs is not None
            self.seqs = seqs
            self.mean_, self.std_ = fit_frame_stats(seqs, rows)
            self.dim = int(seqs.dim)

    def batch(self, rows: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Net arguments for ``rows``: ``(x (B, D),)`` or ``(x (B, T, D), lengths (B,))``."""
        if self.kind == "vector":
            return (self.X[torch.as_tensor(rows).to(self.device)],)
        rows = rows.numpy() if isinstance(rows, torch.Tensor) else rows
        x, lengths = pad_batch(self.seqs, rows, self.mean_, self.std_)
        return torch.from_numpy(x).to(self.device), torch.from_numpy(lengths)

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "mean": np.asarray(self.mean_, np.float32).tolist(),
                "std": np.asarray(self.std_, np.float32).tolist()}


class Labels:
    """Per-output label tensors on the device: regression ``(y, mask)`` with missing values
    zeroed and masked out; classification codes with -1 for missing."""

    def __init__(self, outputs: Sequence[Output], ds: Dataset, device: torch.device) -> None:
        self.y: dict[str, torch.Tensor] = {}
        self.mask: dict[str, torch.Tensor] = {}
        for o in outputs:
            truth = ds.truths[o.task][o.target.name]
            if o.kind == "classification":
                self.y[o.name] = torch.as_tensor(truth, dtype=torch.long, device=device)  # (n,)
            else:
                scaled = _scaled_regression(o, truth.astype(np.float32))  # (n, k)
                valid = np.isfinite(scaled)
                self.y[o.name] = torch.as_tensor(np.where(valid, scaled, 0.0), dtype=torch.float32,
                                                 device=device)
                self.mask[o.name] = torch.as_tensor(valid, device=device)

    def valid_rows(self, name: str) -> np.ndarray:
        """(n,) bool: rows with at least one label of this output."""
        if name in self.mask:
            return self.mask[name].any(dim=1).cpu().numpy()
        return (self.y[name] >= 0).cpu().numpy()


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
    """Normalised inverse Train frequency per class (``heads.losses.inverse_frequency_weights``);
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


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises:
        ValueError: ``cuda`` asked for but not available.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use auto or cpu")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------- scoring
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


# ---------------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """What :func:`train_net` returns: raw predictions for every row and a summary."""

    raw: dict[str, np.ndarray]
    info: dict[str, Any]


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant or cosine to 0.

    Example:
        >>> [round(lr_factor(s, total_steps=4, warmup_steps=2, schedule="cosine"), 2) for s in range(4)]
        [0.5, 1.0, 1.0, 0.5]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "none":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def predict_raw(net: torch.nn.Module, inputs: Inputs, rows: np.ndarray, batch_size: int
                ) -> dict[str, np.ndarray]:
    """Net outputs (regression after the output mode, logits) for ``rows``, in row order."""
    net.eval()
    chunks: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in net.tasks}
    for lo in range(0, len(rows), batch_size):
        out = net(*inputs.batch(rows[lo:lo + batch_size]))
        for name, value in out.items():
            chunks[name].append(value.float().cpu().numpy())
    return {name: (np.concatenate(c) if c else np.zeros((0, k), np.float32))
            for (name, _, k), c in zip(net.tasks, chunks.values())}


def train_net(cfg: ExperimentConfig, opts: TrainOptions, ds: Dataset, tasks: Sequence[Task],
              outputs: Sequence[Output], inputs: Inputs, labels: Labels, seed: int, *,
              device: torch.device, run_dir: Path, tag: str) -> TrainResult:
    """Train one net for ``outputs`` and return its predictions on every row.

    Writes ``run_dir/curves_<tag>.json`` after every epoch and ``run_dir/model_<tag>.pt`` (best
    state, net config, options, input standardisation, label ranges) at the end.
    """
    t0 = time.perf_counter()
    names = [o.name for o in outputs]
    train_rows = ds.rows("Train")
    has_label = np.zeros(len(ds.ids), dtype=bool)
    for o in outputs:
        has_label |= labels.valid_rows(o.name)
    train_rows = train_rows[has_label[train_rows]]  # clips without any label teach nothing
    val_rows = ds.rows("Val")
    if len(train_rows) == 0:
        raise ValueError(f"outputs {names}: no Train clip has a label")

    # model, weighting, optimiser, schedule
    torch.manual_seed(seed)
    net_options = dict(opts.net)
    if opts.output is not None:
        net_options["output"] = opts.output
    if opts.chain:
        if cfg.head != "mlp-mtl":
            raise ValueError(f"option chain needs head mlp-mtl; got head {cfg.head!r}")
        net_options["chain"] = resolve_chain(opts.chain, outputs)
    net = build_net(cfg.head, inputs.dim, [o.spec() for o in outputs], **net_options).to(device)
    weighting = build_weighting(opts.weighting, len(outputs)).to(device)
    groups = [{"params": list(net.parameters()), "weight_decay": opts.weight_decay}]
    if list(weighting.parameters()):
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0})
    optim_cls = torch.optim.AdamW if opts.optimizer == "adamw" else torch.optim.Adam
    # foreach: one fused update for all parameters (torch only defaults to it on CUDA)
    optimizer = optim_cls(groups, lr=opts.lr, foreach=True)
    steps_per_epoch = math.ceil(len(train_rows) / opts.batch_size)
    total_steps = steps_per_epoch * opts.epochs
    warmup_steps = int(round(opts.warmup * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, total_steps=total_steps, warmup_steps=warmup_steps, schedule=opts.schedule))
    class_weights = train_class_weights(outputs, ds, train_rows, device, opts.class_weights)
    generator = torch.Generator().manual_seed(seed)
    eval_batch = EVAL_BATCH_VECTORS if inputs.kind == "vector" else max(64, 2 * opts.batch_size)
    log.info("%s %s: %d parameters, %d Train / %d Val clips, %d steps per epoch, device %s",
             cfg.head, tag, sum(p.numel() for p in net.parameters()), len(train_rows),
             len(val_rows), steps_per_epoch, device)

    curves: dict[str, Any] = {"outputs": names, "epoch": [], "train_loss": {n: [] for n in names},
                              "train_total": [], "val_score": {}, "val_selection": [],
                              "task_weights": {n: [] for n in names}, "lr": [], "seconds": []}
    best_score, best_epoch, best_state, epochs_run = None, -1, None, 0
    train_rows_t = torch.as_tensor(train_rows)
    for epoch in range(opts.epochs):
        # ---- one pass over Train in a seeded random order
        net.train()
        order = train_rows_t[torch.randperm(len(train_rows), generator=generator)]
        loss_sum = torch.zeros(len(outputs), device=device)
        total_sum = torch.zeros((), device=device)
        for start in range(0, len(order), opts.batch_size):
            rows = order[start:start + opts.batch_size]
            pred = net(*inputs.batch(rows))  # {output: (B, k)}
            rows_dev = rows.to(device)
            losses = output_losses(outputs, pred, labels, rows_dev, class_weights,
                                   opts.label_smoothing)  # (K,)
            total = weighting.combine(losses, epoch)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += losses.detach()
            total_sum += total.detach()
        epoch_losses = (loss_sum / steps_per_epoch).tolist()
        weighting.end_epoch(epoch_losses)
        epochs_run = epoch + 1

        # ---- Val scores, curves, early stopping
        raw_val = predict_raw(net, inputs, val_rows, eval_batch)
        preds_val = {o.name: to_label_space(o, raw_val[o.name]) for o in outputs}
        scores = val_scores(outputs, tasks, ds, val_rows, preds_val)
        selection = selection_score(scores)
        task_weights = weighting.weights()
        curves["epoch"].append(epoch)
        for n, v in zip(names, epoch_losses):
            curves["train_loss"][n].append(v)
        curves["train_total"].append(float(total_sum) / steps_per_epoch)
        for n, (s, _) in scores.items():
            curves["val_score"].setdefault(n, []).append(s)
        curves["val_selection"].append(selection)
        for n, w in zip(names, task_weights):
            curves["task_weights"][n].append(float(w))
        curves["lr"].append(optimizer.param_groups[0]["lr"])
        curves["seconds"].append(round(time.perf_counter() - t0, 3))
        log.info("epoch %d/%d %s: loss %s | Val %s | weights %s", epoch + 1, opts.epochs, tag,
                 " ".join(f"{n} {v:.4f}" for n, v in zip(names, epoch_losses)),
                 " ".join(f"{n} {s:.4f}" for n, (s, _) in scores.items()),
                 " ".join(f"{n} {w:.3f}" for n, w in zip(names, task_weights)))
        if best_score is None or selection > best_score:
            best_score, best_epoch, bad_epochs = selection, epoch, 0
            best_state = {"net": copy.deepcopy(net.state_dict()),
                          "weighting": copy.deepcopy(weighting.state_dict())}
        else:
            bad_epochs += 1
        curves["best_epoch"] = best_epoch
        _write_json(run_dir / f"curves_{tag}.json", curves)
        if opts.patience > 0 and bad_epochs >= opts.patience:
            log.info("%s: no better Val score for %d epochs; stopping after epoch %d (best %d)",
                     tag, opts.patience, epoch + 1, best_epoch + 1)
            break

    # ---- restore the best state, predict every row, save the checkpoint
    if opts.restore_best and best_state is not None:
        net.load_state_dict(best_state["net"])
        weighting.load_state_dict(best_state["weighting"])
    raw = predict_raw(net, inputs, np.arange(len(ds.ids)), eval_batch)
    final_weights = dict(zip(names, (float(w) for w in weighting.weights())))
    info = {"best_epoch": best_epoch, "epochs_run": epochs_run,
            "stopped_early": epochs_run < opts.epochs, "best_val_selection": best_score,
            "task_weights": final_weights, "train_clips": int(len(train_rows)),
            "device": str(device), "seconds": round(time.perf_counter() - t0, 3),
            "curves": f"curves_{tag}.json", "checkpoint": f"model_{tag}.pt"}
    checkpoint = {
        "net": net.state_dict(), "weighting": weighting.state_dict(), "head": cfg.head,
        "input_dim": inputs.dim, "input_kind": inputs.kind, "net_tasks": [o.spec() for o in outputs],
        "net_config": dataclasses.asdict(net.config), "weighting_spec": opts.weighting,
        "options": dataclasses.asdict(opts), "experiment": dataclasses.asdict(cfg), "seed": seed,
        "standardisation": inputs.state(),
        "outputs": [{"name": o.name, "task": o.task, "target": o.target.name, "loss": o.loss,
                     "lo": o.lo, "hi": o.hi, "classes": o.target.classes} for o in outputs],
        "best_epoch": best_epoch, "epochs_run": epochs_run,
    }
    tmp = run_dir / f".model_{tag}.pt.tmp"
    torch.save(checkpoint, tmp)
    os.replace(tmp, run_dir / f"model_{tag}.pt")
    return TrainResult(raw, info)


def _load_inputs(cfg: ExperimentConfig, opts: TrainOptions, ds: Dataset, kind: str,
                 device: torch.device) -> Inputs:
    train_rows = ds.rows("Train")
    if kind == "vector":
        return Inputs("vector", device, X=ds.X, train_rows=train_rows)
    seqs = getattr(ds, "sequences", None)
    if seqs is None:  # a plain Dataset: read the frames of its clips from the store
        from extract.store import FeatureStore

        seqs, present, _ = load_sequences(FeatureStore(cfg.workdir), cfg.features, ds.ids,
                                          frames_field=opts.frames_field, layer=cfg.layer,
                                          max_memory_gb=opts.max_memory_gb)
        if not present.all():
            log.warning("%d clip(s) have no stored frames; each is fed one Train-mean frame",
                        int((~present).sum()))
    if len(seqs) != len(ds.ids):
        raise ValueError(f"sequences cover {len(seqs)} clips but the dataset has {len(ds.ids)}")
    return Inputs("sequence", device, seqs=seqs, train_rows=train_rows)


def fit_torch(cfg: ExperimentConfig, ds: Dataset, tasks: Sequence[Task], seed: int
              ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any], dict[str, dict[str, int]]]:
    """Train a torch head on all tasks at once (the experiment runner's multitask fit).

    Args:
        cfg: experiment config; ``cfg.head`` is a key of :data:`TORCH_HEADS`, ``cfg.options``
            holds :class:`TrainOptions` fields; the run directory is ``run_dir_of(cfg)``.
        ds: aligned ids, splits, features and labels (a :class:`SequenceDataset` carries
            frame sequences; otherwise sequence heads read them from the store).
        tasks: the resolved tasks.
        seed: seeds the weights and the batch order.

    Returns:
        ``(preds, info, excluded)``: ``preds[task][target]`` for every row of ``ds``
        (regression (n, k) float32, classification (n,) class codes); ``info`` with the best
        epoch, epochs run, final task weights, options; ``excluded[task][target]``: Train and
        Val clips without that label.

    Raises:
        ValueError: unknown head or option, no Train labels, CUDA asked for but missing.
        FeatureError: a sequence head finds no frame field.
    """
    if cfg.head not in TORCH_HEADS:
        raise ValueError(f"unknown torch head {cfg.head!r}; valid: {', '.join(sorted(TORCH_HEADS))}")
    opts = TrainOptions.from_dict(cfg.options)
    device = pick_device(opts.device)
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    outputs = make_outputs(tasks, ds, ds.rows("Train"), opts)
    kind = TORCH_HEADS[cfg.head].input_kind
    inputs = _load_inputs(cfg, opts, ds, kind, device)
    labels = Labels(outputs, ds, device)

    if device.type == "cpu":  # --jobs: small ops on a busy CPU get slower with more threads
        threads_before = torch.get_num_threads()
        torch.set_num_threads(max(1, int(cfg.n_jobs)))
    try:
        return _fit_groups(cfg, opts, ds, tasks, seed, outputs, inputs, labels, device, run_dir)
    finally:
        if device.type == "cpu":
            torch.set_num_threads(threads_before)


def _fit_groups(cfg: ExperimentConfig, opts: TrainOptions, ds: Dataset, tasks: Sequence[Task],
                seed: int, outputs: list[Output], inputs: Inputs, labels: Labels,
                device: torch.device, run_dir: Path
                ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any], dict[str, dict[str, int]]]:
    """Train one net (or one per output when ``separate``) and collect predictions."""
    groups = [[o] for o in outputs] if opts.separate else [list(outputs)]
    if opts.separate and opts.weighting != "equal":
        # one loss per net: a weighting has nothing to balance (and fixed:w1,..,wK needs K)
        log.info("separate nets: weighting %r is not used (one loss per net)", opts.weighting)
        opts = dataclasses.replace(opts, weighting="equal")
    raw: dict[str, np.ndarray] = {}
    infos: dict[str, Any] = {}
    for group in groups:
        tag = f"seed{seed}" if not opts.separate else f"seed{seed}_{group[0].name}"
        result = train_net(cfg, opts, ds, tasks, group, inputs, labels, seed, device=device,
                           run_dir=run_dir, tag=tag)
        raw.update(result.raw)
        infos[group[0].name if opts.separate else "all"] = result.info

    preds: dict[str, dict[str, np.ndarray]] = {t.name: {} for t in tasks}
    for o in outputs:
        preds[o.task][o.target.name] = to_label_space(o, raw[o.name])
    excluded: dict[str, dict[str, int]] = {}
    tv = np.concatenate([ds.rows("Train"), ds.rows("Val")])
    for o in outputs:
        missing = int((~labels.valid_rows(o.name)[tv]).sum())
        excluded.setdefault(o.task, {})[o.target.name] = missing
    info: dict[str, Any] = {"head": cfg.head, "seed": seed, "options": dataclasses.asdict(opts),
                            "outputs": {o.name: {"task": o.task, "loss": o.loss} for o in outputs}}
    info.update(infos["all"] if not opts.separate else {"separate": infos})
    return preds, info, excluded


fit_torch.multitask = True  # one call trains every task (heads.experiment.run_experiment)


def prepare_dataset(cfg: ExperimentConfig, store: Any, corpus: Any, tasks: Sequence[Task],
                    requests: Sequence[Any]) -> Dataset:
    """The dataset of a torch run: vectors as usual, or frame sequences for sequence heads.

    Sequence heads do not need a vector field (log-mel and openSMILE LLD sets have none): the
    clips are those with stored frames, ``X`` is empty and ``sequences`` holds the frames.

    Raises:
        FeatureError: the set or frame field is missing (says what to extract).
    """
    from data.tasks import target_array

    if cfg.head not in TORCH_HEADS or TORCH_HEADS[cfg.head].input_kind == "vector":
        return build_dataset(store, corpus, tasks, requests)
    opts = TrainOptions.from_dict(cfg.options)
    clips = corpus.clips[corpus.clips["split"].isin(["Train", "Val", "Test"])]
    all_ids = list(clips.index)
    seqs, present, desc = load_sequences(store, cfg.features, all_ids, frames_field=opts.frames_field,
                                         layer=cfg.layer, max_memory_gb=opts.max_memory_gb)
    missing = int((~present).sum())
    if missing:
        log.warning("%d clip(s) have no stored frames (failed or not extracted) and are left out",
                    missing)
        keep = np.flatnonzero(present)
        if isinstance(seqs, InMemorySequences):
            seqs = InMemorySequences.from_arrays(seqs.rows(keep), dim=seqs.dim, dtype=seqs.data.dtype)
        else:
            assert isinstance(seqs, StoreSequences)
            seqs = StoreSequences(seqs.store, seqs.key, seqs.field, [all_ids[i] for i in keep], seqs.dim)
    ids = [c for c, ok in zip(all_ids, present) if ok]
    split = clips.loc[ids, "split"].to_numpy()
    truths = {t.name: {tg.name: target_array(tg, corpus.labels, ids) for tg in t.targets}
              for t in tasks}
    return SequenceDataset(ids, split, np.zeros((len(ids), 0), np.float32), list(tasks), truths,
                           [desc], missing, sequences=seqs)


fit_torch.prepare_dataset = prepare_dataset  # heads.experiment builds the dataset through it


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the net of a ``model_seed<k>.pt`` file with its best state.

    Returns:
        ``(net in eval mode, the checkpoint dict)``.
    """
    ckpt = torch.load(path, map_location=device, weights_only=False)
    cfg = ckpt["net_config"]
    net = build_net(ckpt["head"], ckpt["input_dim"], ckpt["net_tasks"], **cfg)
    net.load_state_dict(ckpt["net"])
    return net.eval(), ckpt


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True, default=str))
    os.replace(tmp, path)


__all__ = ["TORCH_HEADS", "TrainOptions", "Output", "fit_torch", "prepare_dataset", "train_net",
           "make_outputs", "resolve_chain", "output_losses", "val_scores", "selection_score",
           "lr_factor", "load_checkpoint", "SequenceDataset", "Inputs", "Labels"]
