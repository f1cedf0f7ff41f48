"""Point metrics of class labels: WA, UAR, macro-F1, per-class recall, speaker accuracy, confusion.

Names say their direction: ``*_score`` goes up. Only NumPy; no I/O, no state.

* WA (weighted accuracy) is plain accuracy, seed 004's ``wa = sum_k N_k^correct / N^total``
  ("We can calculate the Weighted Average (WA)").
* UAR (= seed 004's UA, unweighted accuracy) is the mean of per-class recalls: scikit-learn's
  ``recall_score(average="macro")``, ``audmetric.unweighted_average_recall`` (FIELD_NOTES
  section 2). Without ``labels`` the classes averaged are those found in the truth OR the
  prediction, and a predicted class absent from the truth has recall 0 (both libraries'
  ``zero_division=0``): predicting a class that does not exist lowers the score.
* Macro-F1 averages 2 TP / (2 TP + FP + FN) over the same classes.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from heads.scoring.checks import class_set, label_pair


def per_class_recall(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
) -> dict[Any, float]:
    """Recall of each class: the fraction of its true clips predicted as it.

    Args:
        y_true: true classes, shape (n,).
        y_pred: predicted classes, shape (n,).
        labels: the classes (default: every class in either input, sorted).

    Returns:
        Class -> recall, in class order; 0.0 for a class with no true clip (scikit-learn's
        ``recall_score(average=None, zero_division=0)``).

    Raises:
        ValueError: bad inputs (see :func:`wa_score`) or an empty ``labels``.

    Example:
        >>> per_class_recall([0, 0, 1, 1], [0, 1, 1, 1])
        {0: 0.5, 1: 1.0}
    """
    t, p = label_pair(y_true, y_pred)
    out: dict[Any, float] = {}
    for c in class_set(t, p, labels):
        is_c = t == c
        support = int(is_c.sum())
        key = c.item() if isinstance(c, np.generic) else c
        out[key] = float((p[is_c] == c).sum()) / support if support else 0.0
    return out


def wa_score(y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray) -> float:
    """Weighted accuracy (WA): the fraction of clips whose class is predicted right.

    Args:
        y_true: true classes, shape (n,).
        y_pred: predicted classes, shape (n,).

    Returns:
        Accuracy in [0, 1].

    Raises:
        ValueError: inputs not 1-D, of different lengths, empty, or holding NaN.

    Example:
        >>> wa_score([0, 0, 1, 2], [0, 1, 1, 2])
        0.75
    """
    t, p = label_pair(y_true, y_pred)
    return float(np.mean(t == p))


def uar_score(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
) -> float:
    """Unweighted average recall: the mean over classes of each class's recall.

    Same value as scikit-learn's ``recall_score(average="macro")`` and
    ``audmetric.unweighted_average_recall``: without ``labels``, the classes are those found
    in ``y_true`` or ``y_pred``; a class that never occurs in ``y_true`` has recall 0 (the
    ``zero_division=0`` convention of both libraries), so predicting a class that does not
    exist lowers the score. With ``labels``, only those classes are averaged.

    Args:
        y_true: true classes, shape (n,).
        y_pred: predicted classes, shape (n,).
        labels: the classes to average over; default: all classes seen in either input.

    Returns:
        The UAR in [0, 1]; chance level is 1 / number of classes.

    Raises:
        ValueError: for inputs that are not 1-D, differ in length, are empty or hold NaN;
            for an empty ``labels``.

    Examples:
        >>> uar_score([0, 0, 1, 1], [0, 1, 1, 1])
        0.75
        >>> uar_score([0, 0], [0, 1])
        0.25
    """
    return float(np.mean(list(per_class_recall(y_true, y_pred, labels=labels).values())))


def macro_f1_score(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
) -> float:
    """Macro-averaged F1: the mean over classes of 2 TP / (2 TP + FP + FN).

    A class with no true and no predicted clip (only possible through ``labels``) scores 0,
    as sklearn's ``f1_score(average="macro", zero_division=0)``.

    Args:
        y_true: true classes, shape (n,).
        y_pred: predicted classes, shape (n,).
        labels: the classes to average over (default: every class seen).

    Returns:
        Macro-F1 in [0, 1].

    Raises:
        ValueError: bad inputs (see :func:`wa_score`) or an empty ``labels``.

    Example:
        >>> round(macro_f1_score([0, 0, 1, 1], [0, 1, 1, 1]), 4)
        0.7333
    """
    t, p = label_pair(y_true, y_pred)
    scores = []
    for c in class_set(t, p, labels):
        tp = float(np.sum((t == c) & (p == c)))
        fp = float(np.sum((t != c) & (p == c)))
        fn = float(np.sum((t == c) & (p != c)))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def speaker_accuracy_score(
    speaker_true: Sequence[Any] | np.ndarray, speaker_pred: Sequence[Any] | np.ndarray
) -> float:
    """Speaker accuracy (seed 004 Table III): the fraction of clips whose speaker is predicted
    right. A speaker-adversarial model wants it low; the metric itself goes up.

    Example:
        >>> speaker_accuracy_score(["01F", "01M", "02F"], ["01F", "01F", "02F"])
        0.6666666666666666
    """
    return wa_score(speaker_true, speaker_pred)


def confusion(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    labels: Sequence[Any],
) -> np.ndarray:
    """Confusion matrix of counts: rows are true classes, columns predicted, in ``labels`` order.

    Pairs whose true or predicted class is not in ``labels`` are left out, as in
    scikit-learn's ``confusion_matrix``.

    Args:
        y_true: true classes, shape (n,).
        y_pred: predicted classes, shape (n,).
        labels: the classes, in the order of rows and columns; unique.

    Returns:
        int64 array of shape (len(labels), len(labels)).

    Raises:
        ValueError: for invalid inputs (see :func:`uar_score`) or empty / repeated ``labels``.

    Examples:
        >>> confusion([0, 0, 1, 2], [0, 1, 1, 1], labels=[0, 1, 2])
        array([[1, 1, 0],
               [0, 1, 0],
               [0, 1, 0]])
    """
    t, p = label_pair(y_true, y_pred)
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got {labels!r}")
    if np.unique(lab).size != lab.size:
        raise ValueError(f"labels must be unique, got {labels!r}")
    k = lab.size
    order = np.argsort(lab, kind="stable")
    sorted_lab = lab[order]

    def positions(values: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(sorted_lab, values), 0, k - 1)
        return np.where(sorted_lab[pos] == values, order[pos], -1)

    ti, pi = positions(t), positions(p)
    keep = (ti >= 0) & (pi >= 0)
    return np.bincount(ti[keep] * k + pi[keep], minlength=k * k).reshape(k, k).astype(np.int64)
