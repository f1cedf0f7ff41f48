"""METRICS: every point metric by name, with its direction and what it scores.

CLI choices, report arrows and the contract tests come from this one dict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from heads.scoring.classification import macro_f1_score, speaker_accuracy_score, uar_score, wa_score
from heads.scoring.regression import mae_error, mean_ccc_organisers_score, mean_ccc_score
from heads.scoring.task import exvo_score
from heads.scoring.text import character_error, word_error

METRIC_TARGETS = ("regression", "classification", "aggregate", "text")
"""What a metric scores: regression arrays, class labels, already computed components, or
transcripts."""


@dataclass(frozen=True)
class MetricInfo:
    """One entry of :data:`METRICS`.

    Attributes:
        fn: the metric function. ``"regression"`` / ``"classification"``:
            ``fn(y_true, y_pred) -> float``; ``"text"``: ``fn(references, hypotheses)``;
            ``"aggregate"``: it takes the components (:func:`exvo_score`). Its name ends in
            ``_score`` when greater is better and in ``_error`` when lower is better.
        greater_is_better: direction, for model selection and report arrows.
        description: one line for CLI listings and reports.
        target: one of :data:`METRIC_TARGETS`.
    """

    fn: Callable[..., float]
    greater_is_better: bool
    description: str
    target: str


METRICS: dict[str, MetricInfo] = {
    "ccc": MetricInfo(
        mean_ccc_score, True,
        "mean per-column Lin's CCC, population moments (= audmetric.concordance_cc)",
        "regression",
    ),
    "ccc_organisers": MetricInfo(
        mean_ccc_organisers_score, True,
        "mean per-column CCC as the 2022 organisers scored it: 1/(n-1) variances, 4 decimals",
        "regression",
    ),
    "uar": MetricInfo(uar_score, True,
                      "unweighted average recall (macro recall over truth and predicted classes; "
                      "seed 004's UA)", "classification"),
    "wa": MetricInfo(wa_score, True, "weighted accuracy (plain accuracy)", "classification"),
    "macro_f1": MetricInfo(macro_f1_score, True, "macro-averaged F1", "classification"),
    "speaker_accuracy": MetricInfo(speaker_accuracy_score, True,
                                   "speaker identification accuracy", "classification"),
    "mae": MetricInfo(mae_error, False, "mean absolute error (target units)", "regression"),
    "exvo": MetricInfo(
        exvo_score, True,
        "ExVo 2022 harmonic mean of (emotion CCC, country UAR, 1 / age MAE)",
        "aggregate",
    ),
    "wer": MetricInfo(word_error, False, "word error rate (jiwer.wer, corpus level)", "text"),
    "cer": MetricInfo(character_error, False, "character error rate (jiwer.cer, corpus level)",
                      "text"),
}
"""Metric name -> :class:`MetricInfo`."""
