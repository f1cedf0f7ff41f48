"""The configuration of a training run: what a run is (:class:`ExperimentConfig`) and how a
torch head trains (:class:`TrainOptions`), with every closed choice as one tuple.

This module sits at the bottom of :mod:`heads`: it imports nothing from the package, and no
torch, so the CLI and the recipes validate settings without loading a model.

Example:
    >>> TrainOptions.from_dict({"epochs": 3, "chain": "country,type"}).chain
    ('country', 'type')
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from extract.devices import DEVICES

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("none", "cosine")
REGRESSION_LOSSES = ("ccc", "mse", "mae")
OUTPUT_MODES = ("sigmoid", "clamp", "clamp-st", "linear")
"""Regression output modes: sigmoid; clamp to [0, 1] (plain ``torch.clamp``: zero gradient
outside, as in seed 000); clamp-st (clamp forward, identity gradient: straight-through);
linear (no transform)."""
STOP_ON = ("score", "loss")
"""What early stopping and the best epoch follow: the mean Val headline score, or the Val loss
(the training losses on Val summed with the current task weights; the ExVo organisers' rule)."""
SPLITS = ("Train", "Val", "Test")
"""The corpus splits a run uses, in order."""
ADVERSARY_MODES = ("reverse", "forward")
"""Seed 004's speaker head: ``reverse`` behind gradient reversal (speaker normalisation) or
``forward`` without it (the paper's "Forward" ablation, Table III)."""
BETA_AT = ("loss", "grl")
"""Where ``beta`` scales: the loss (the paper's Eq.) or the reversal layer (Ganin's lambda)."""
DECAYS = ("cosine", "linear", "constant")
"""Fine-tuning stage 2: what follows the warm-up (:mod:`heads.finetune.schedule`)."""
WEIGHTING_NAMES = ("druw", "dwa", "equal", "exvo", "fixed", "rruw", "ruw", "uw")
"""The multitask weightings by name: :func:`heads.training.weighting.register_weighting`
registers a class under each of these and refuses any other name, so settings are checked here
without torch."""
SPEAKER_COLUMN = "speaker"
"""``--adversary speaker:BETA``: the corpus's group column (the speaker of each clip)."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines a run (saved as config.json).

    Attributes:
        workdir: the workdir (store + corpus reference).
        task: task spec, e.g. ``avb-high`` or ``avb-high,avb-type`` or ``classify:type``.
        features: feature specs / keys, concatenated in order.
        head: head name from the registry.
        layer: SSL layer (None = last stored); pooling: SSL pooling.
        seeds: number of seeds (0..seeds-1); mean and std are reported.
        n_boot: bootstrap resamples for the Val CI.
        run_name: folder name under runs/ (default: made from the settings and the time).
        n_jobs: CPU threads for heads that use them.
        options: head-specific options (torch heads: epochs, lr, weighting, loss, ...).
    """

    workdir: str
    task: str
    features: tuple[str, ...]
    head: str
    layer: int | None = None
    pooling: str = "mean"
    seeds: int = 1
    n_boot: int = 500
    run_name: str | None = None
    n_jobs: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainOptions:
    """Settings of the training loop (``ExperimentConfig.options``; recipes' ``[train]``).

    Attributes:
        weighting: multitask weighting spec for :func:`heads.training.weighting.build_weighting`
            (``equal``, ``fixed:5,0.05,0.05``, ``uw``, ``exvo``, ``ruw``, ``rruw``, ``dwa``,
            ``druw``); one weight per output (target).
        loss: regression loss: ``ccc`` | ``mse`` | ``mae`` for targets scored by CCC, plus
            ``TARGET=LOSS`` items, e.g. ``"ccc,age=mse"``. Targets scored by MAE (age) use
            ``mae`` unless named. Classification always uses cross-entropy.
        output: regression output mode (``sigmoid``, ``clamp``, ``clamp-st``, ``linear``);
            None: the head's default.
        chain: intermediate tasks (``mlp-mtl``), by task or target name.
        unscaled: regression targets (or tasks) trained in their own units instead of the
            [0, 1] scaling, e.g. ``("age",)`` for an MSE in years (paper 001); they need the
            ``linear`` output.
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
        stop_on: :data:`STOP_ON`: ``score`` (the mean Val headline) or ``loss`` (the Val loss)
            decides the best epoch and early stopping.
        max_memory_gb: frame sequences larger than this are streamed from the store.
        net: options of the net's config dataclass (e.g. ``{"pooling": "last"}``).
        adversary: ``COLUMN:BETA``, a classifier of that column (``speaker``: the corpus's
            group column; else a label column) on the net's shared representation, behind
            gradient reversal, adding ``beta * CE`` to the loss (seed 004, III.C-D); None: none.
        adversary_mode: ``reverse`` (gradient reversal) or ``forward`` (no reversal: the
            paper's ablation).
        ctc: ``alpha`` of a CTC character head on the net's frame representation, adding
            ``alpha * CTC`` to the loss (seed 004, III.B; the paper's alpha is 0.1); needs the
            corpus's ``text`` column and a sequence net with frames; None: none.
    """

    weighting: str = "equal"
    loss: str = "ccc"
    output: str | None = None
    chain: tuple[str, ...] = ()
    unscaled: tuple[str, ...] = ()
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
    adversary: str | None = None
    adversary_mode: str = "reverse"
    ctc: float | None = None
    stop_on: str = "score"

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
        for key in ("chain", "unscaled"):
            if isinstance(options.get(key), str):
                options[key] = tuple(c.strip() for c in options[key].split(",") if c.strip())
            elif options.get(key) is not None:
                options[key] = tuple(str(c) for c in options[key])
        types = {"epochs": int, "batch_size": int, "patience": int, "lr": float,
                 "weight_decay": float, "warmup": float, "label_smoothing": float,
                 "max_memory_gb": float, "ctc": float}
        for key, typ in types.items():
            if key in options and not (key == "ctc" and options[key] is None):
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
        choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "device": DEVICES,
                   "stop_on": STOP_ON}
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
        if self.unscaled and self.output not in (None, "linear"):
            raise ValueError(f"option unscaled ({', '.join(self.unscaled)}) trains targets in "
                             f"their own units: it needs output = linear, not {self.output!r}")
        if self.separate and self.chain:
            raise ValueError("option chain needs one multitask net; it cannot go with separate = true")
        if self.adversary_mode not in ADVERSARY_MODES:
            raise ValueError(f"option adversary_mode must be one of {ADVERSARY_MODES}; got "
                             f"{self.adversary_mode!r}")
        if self.adversary is not None:
            parse_adversary(self.adversary)
        if self.ctc is not None and not (0.0 < self.ctc < float("inf")):
            raise ValueError(f"option ctc is the weight alpha of the CTC loss, a number > 0 "
                             f"(seed 004: 0.1); got {self.ctc}")
        if (self.adversary is not None or self.ctc is not None) and self.separate:
            raise ValueError("options adversary and ctc train beside one multitask net; they "
                             "cannot go with separate = true")


TRAIN_OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainOptions))
"""Every field of :class:`TrainOptions`, in order (CLI flags and recipe keys come from it)."""


def parse_adversary(spec: str) -> tuple[str, float]:
    """``"speaker:0.1"`` -> ("speaker", 0.1): the adversary's column and its weight beta.

    Raises:
        ValueError: not ``COLUMN:BETA``, or beta not a finite number >= 0.

    Example:
        >>> parse_adversary("speaker:1")
        ('speaker', 1.0)
    """
    column, sep, beta = (p.strip() for p in str(spec).rpartition(":"))
    try:
        value = float(beta)
    except ValueError:
        value = float("nan")
    if not sep or not column or not (0.0 <= value < float("inf")):
        raise ValueError(f"option adversary must be COLUMN:BETA with BETA a number >= 0, e.g. "
                         f"speaker:0.1 (seed 004: beta 0, 0.1 or 1); got {spec!r}")
    return column, value


def parse_weighting(spec: str) -> tuple[str, str]:
    """Split a weighting spec ``'name:arg'`` into ``(name, arg)``; ``arg`` is ``''`` when absent.

    Example:
        >>> parse_weighting(" DWA : T=5 ")
        ('dwa', 'T=5')
    """
    name, _, arg = spec.strip().partition(":")
    return name.strip().lower(), arg.strip()


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
