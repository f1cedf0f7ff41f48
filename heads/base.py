"""The head contract: every head, classical or torch, is a :class:`Head` in :data:`HEADS`.

A head fits on the Train rows of a :class:`~heads.dataset.Dataset`, picks what it picks on the
Val rows (hyper-parameters, the epoch) and predicts every row::

    result = HEADS["ridge"].fit(dataset, tasks, seed=0, out_dir=run_dir, options=FitOptions())
    result.predictions["avb-high"]["high"]   # (n, 10) for every row of the dataset

Heads enter :data:`HEADS` through :func:`register_head` (classical heads in
:mod:`heads.classical`, torch heads in :mod:`heads.training.head`);
:func:`heads.registry.load_heads` imports both families. The CLI's ``--head`` choices and help,
the recipe validation and the contract tests are generated from :data:`HEADS`.

This module imports no torch and no scikit-learn.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from data.corpus import Corpus
from data.tasks import Task
from extract.store import FeatureStore
from heads.dataset import Dataset, build_dataset
from heads.features import FeatureRequest

FAMILIES = ("classical", "torch")
"""Head families: scikit-learn / XGBoost estimators, or torch nets trained by heads.training."""


@dataclass(frozen=True)
class FitOptions:
    """What a fit reads besides the data.

    Attributes:
        head_options: head-specific options (torch heads: the fields of
            :class:`heads.config.TrainOptions`; classical heads take none).
        n_jobs: CPU threads the head may use.
        run_config: the resolved run settings, saved with what the head writes (checkpoints).
        columns: per-row labels beside the tasks', aligned with the dataset's rows, for seed
            004's auxiliary heads (``adversary``: the adversary's column, ``text``: the
            transcripts; :func:`heads.auxiliary.auxiliary_columns`); empty without them.
    """

    head_options: dict[str, Any] = field(default_factory=dict)
    n_jobs: int = 1
    run_config: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, list] = field(default_factory=dict)


@dataclass
class FitResult:
    """What one fit (one seed) returns.

    Attributes:
        predictions: task -> target -> predictions for every row of the dataset (regression
            ``(n, k)`` float32, classification ``(n,)`` class codes).
        params: the chosen parameters: per task name when ``per_task`` (one model per task),
            else one entry for the whole (multitask) model.
        excluded: task -> target -> Train and Val rows left out for a missing label.
        curves: name -> file under ``out_dir`` holding the learning curves (torch heads).
        per_task: whether ``params`` is keyed by task.
        models: task -> target -> the file under ``out_dir`` holding this seed's fitted model
            of the target (torch heads; classical files are named by
            :func:`heads.saved_model.classical_file`).
        auxiliary: per-row outputs of seed 004's auxiliary heads (torch heads with
            ``adversary`` / ``ctc``): ``adversary`` (classes, codes, predicted, probe) and
            ``text`` (hypotheses, vocab); empty without them.
    """

    predictions: dict[str, dict[str, np.ndarray]]
    params: dict[str, Any]
    excluded: dict[str, dict[str, int]]
    curves: dict[str, str] = field(default_factory=dict)
    per_task: bool = False
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    auxiliary: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Head(Protocol):
    """A registered head.

    Attributes:
        name: registry key (``--head``).
        family: one of :data:`FAMILIES`.
        input_kind: ``vector`` (a feature matrix) or ``sequence`` (frame sequences).
        description: one line for the CLI help.
    """

    name: str
    family: str
    input_kind: str
    description: str

    def load_dataset(self, store: FeatureStore, corpus: Corpus, tasks: Sequence[Task],
                     requests: Sequence[FeatureRequest], options: FitOptions) -> Dataset:
        """The dataset this head reads (vectors, or frames for a sequence head)."""
        ...

    def fit(self, dataset: Dataset, tasks: Sequence[Task], *, seed: int, out_dir: Path,
            options: FitOptions) -> FitResult:
        """Fit on Train, select on Val, predict every row; write files under ``out_dir``."""
        ...


HEADS: dict[str, Head] = {}
"""Head name -> head; filled by :func:`register_head` (complete after
:func:`heads.registry.load_heads`)."""


def register_head(head: Any) -> Any:
    """Put a head into :data:`HEADS` under its ``name``; a class is instantiated first.

    Usable as a class decorator (``@register_head``) or called with an instance.

    Raises:
        ValueError: the name is registered already, or the family is unknown.
        TypeError: the object does not follow :class:`Head`.
    """
    obj = head() if isinstance(head, type) else head
    if not isinstance(obj, Head):
        raise TypeError(f"{obj!r} does not follow the Head protocol (name, family, input_kind, "
                        f"description, load_dataset, fit)")
    if obj.family not in FAMILIES:
        raise ValueError(f"head {obj.name!r}: family must be one of {FAMILIES}; got {obj.family!r}")
    if obj.name in HEADS:
        raise ValueError(f"head name {obj.name!r} is registered twice")
    HEADS[obj.name] = obj
    return head


class VectorHead:
    """Mixin of heads that read the feature matrix (:func:`heads.dataset.build_dataset`)."""

    input_kind: ClassVar[str] = "vector"

    def load_dataset(self, store: FeatureStore, corpus: Corpus, tasks: Sequence[Task],
                     requests: Sequence[FeatureRequest], options: FitOptions) -> Dataset:
        return build_dataset(store, corpus, tasks, requests)
