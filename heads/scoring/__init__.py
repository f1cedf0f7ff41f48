"""Scoring: point metrics, task scores and THE bootstrap, in one package.

Modules, bottom to top: ``checks`` (the input rules every metric applies), ``regression``
(CCC in two variants, MAE), ``classification`` (WA, UAR, macro-F1, per-class recall, speaker
accuracy, confusion), ``text`` (WER, CER), ``task`` (a task's scores from predictions, the
ExVo score), ``bootstrap`` (one resampling scheme for every CI), ``registry`` (METRICS).

Names say their direction: a function ending in ``_score`` goes up, one ending in ``_error``
goes down (``ccc_score``, ``uar_score``, ``mae_error``, ``word_error``).

Decision (one UAR rule everywhere, FIELD_NOTES section 2): UAR is scikit-learn's
``recall_score(average="macro")`` = ``audmetric.unweighted_average_recall``: the mean recall
over the classes found in the truth OR the prediction, a predicted class absent from the truth
counting with recall 0. ``train`` (every head's selection and its reported score), ``probe``
(selection, score and bootstrap) and the bootstrap of a run all use it; before, the reported
score and the probe's bootstrap averaged over the truth's classes only, so a model predicting a
class that is absent from Val scored higher there than in its own selection. Tests check the
rule against scikit-learn and audmetric.
"""
from heads.scoring.bootstrap import (CI_LEVEL, Resamples, bootstrap_ci, headline_resamples,
                                     percentile_ci, task_ci)
from heads.scoring.classification import (confusion, macro_f1_score, per_class_recall,
                                          speaker_accuracy_score, uar_score, wa_score)
from heads.scoring.regression import (CCC_VARIANTS, ccc_organisers_score, ccc_score, mae_error,
                                      mean_ccc, mean_ccc_organisers_score, mean_ccc_score)
from heads.scoring.registry import METRIC_TARGETS, METRICS, MetricInfo
from heads.scoring.task import HEADLINE_TEXT, exvo_score, score_target, score_task
from heads.scoring.text import character_error, word_error

__all__ = [
    "CCC_VARIANTS", "CI_LEVEL", "HEADLINE_TEXT", "METRICS", "METRIC_TARGETS", "MetricInfo",
    "Resamples", "bootstrap_ci", "ccc_organisers_score", "ccc_score", "character_error",
    "confusion", "exvo_score", "headline_resamples", "macro_f1_score", "mae_error", "mean_ccc",
    "mean_ccc_organisers_score", "mean_ccc_score", "per_class_recall", "percentile_ci",
    "score_target", "score_task", "speaker_accuracy_score", "task_ci", "uar_score", "wa_score",
    "word_error",
]
