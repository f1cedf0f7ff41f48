"""Pure metrics of seed 004 (speech emotion with speaker normalisation): WA, UA, macro-F1,
speaker accuracy, WER and CER.

Names say their direction: ``*_score`` goes up, ``*_error`` goes down. Only NumPy and
``jiwer``; no I/O, no state.

* WA (weighted accuracy) is plain accuracy, the paper's ``wa = sum_k N_k^correct / N^total``
  (004, "We can calculate the Weighted Average (WA)").
* UA (unweighted accuracy) is the mean of per-class recalls (= UAR, sklearn
  ``recall_score(average="macro")``).
* WER / CER are corpus-level: total edits over all pairs divided by total reference words /
  characters, as ``jiwer.wer`` / ``jiwer.cer`` compute them with their default transforms (WER:
  strip, collapse spaces, split on spaces; CER: strip, then characters, spaces included). Case
  and punctuation are compared as given: normalise both sides first (``heads.ctc`` normalises
  transcripts for the character vocabulary).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


def _labels(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D class labels, got shape {arr.shape}")
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError(f"{name} holds {int(np.isnan(arr).sum())} NaN label(s); drop unlabelled rows first")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    if t.size == 0:
        raise ValueError("y_true and y_pred are empty: a metric needs at least one row")
    return t, p


def _classes(t: np.ndarray, p: np.ndarray, labels: Sequence[Any] | None) -> np.ndarray:
    if labels is None:
        return np.unique(np.concatenate([t, p]))
    classes = np.asarray(labels)
    if classes.ndim != 1 or classes.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got {labels!r}")
    return classes


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
    t, p = _labels(y_true, y_pred)
    return float(np.mean(t == p))


def ua_score(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
) -> float:
    """Unweighted accuracy (UA = UAR): the mean over classes of each class's recall.

    Without ``labels`` the classes are those in either input; a class absent from ``y_true``
    has recall 0 (sklearn's ``zero_division=0``).

    Args:
        y_true: true classes, shape (n,).
        y_pred: predicted classes, shape (n,).
        labels: the classes to average over (default: every class seen).

    Returns:
        UA in [0, 1].

    Raises:
        ValueError: bad inputs (see :func:`wa_score`) or an empty ``labels``.

    Example:
        >>> ua_score([0, 0, 0, 1], [0, 0, 0, 0])
        0.5
    """
    t, p = _labels(y_true, y_pred)
    recalls = []
    for c in _classes(t, p, labels):
        support = t == c
        recalls.append(float(np.sum(p[support] == c)) / support.sum() if support.any() else 0.0)
    return float(np.mean(recalls))


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
    t, p = _labels(y_true, y_pred)
    scores = []
    for c in _classes(t, p, labels):
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


def _text_pair(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> tuple[list[str], list[str]]:
    refs = [references] if isinstance(references, str) else list(references)
    hyps = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    if len(refs) != len(hyps):
        raise ValueError(f"references and hypotheses must pair up, got {len(refs)} and {len(hyps)}")
    if not refs:
        raise ValueError("references and hypotheses are empty: a metric needs at least one pair")
    for name, items in (("references", refs), ("hypotheses", hyps)):
        bad = [i for i, s in enumerate(items) if not isinstance(s, str)]
        if bad:
            raise ValueError(f"{name}[{bad[0]}] is {type(items[bad[0]]).__name__}, not str")
    return refs, hyps


def word_error(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Word error rate over a corpus: (substitutions + deletions + insertions) / reference words.

    Computed by ``jiwer.wer``. Empty references are allowed as long as the corpus has at least
    one reference word (their hypothesis words count as insertions).

    Args:
        references: the true transcripts (one string or a sequence).
        hypotheses: the predicted transcripts, paired with ``references``.

    Returns:
        WER >= 0 (above 1 when there are more insertions than reference words).

    Raises:
        ValueError: unpaired or empty inputs, non-strings, or no reference word at all.

    Example:
        >>> word_error(["the cat sat", "hello"], ["the cat sit", "hello world"])
        0.5
    """
    import jiwer

    refs, hyps = _text_pair(references, hypotheses)
    if not any(r.split() for r in refs):
        raise ValueError("word_error needs at least one reference word; every reference is empty")
    return float(jiwer.wer(refs, hyps))


def character_error(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> float:
    """Character error rate over a corpus: character edits / reference characters (spaces count).

    Computed by ``jiwer.cer``.

    Args:
        references: the true transcripts (one string or a sequence).
        hypotheses: the predicted transcripts, paired with ``references``.

    Returns:
        CER >= 0.

    Raises:
        ValueError: unpaired or empty inputs, non-strings, or no reference character at all.

    Example:
        >>> character_error("abcd", "abd")
        0.25
    """
    import jiwer

    refs, hyps = _text_pair(references, hypotheses)
    if not any(r.strip() for r in refs):
        raise ValueError("character_error needs at least one reference character; every reference is empty")
    return float(jiwer.cer(refs, hyps))


@dataclass(frozen=True)
class TextMetricInfo:
    """One entry of :data:`TEXT_METRICS`: the function, its direction, what it takes."""

    fn: Callable[..., float]
    greater_is_better: bool
    description: str
    inputs: str  # "labels" (class arrays) or "text" (transcripts)


TEXT_METRICS: dict[str, TextMetricInfo] = {
    "wa": TextMetricInfo(wa_score, True, "weighted accuracy (plain accuracy)", "labels"),
    "ua": TextMetricInfo(ua_score, True, "unweighted accuracy (mean per-class recall, = UAR)", "labels"),
    "macro_f1": TextMetricInfo(macro_f1_score, True, "macro-averaged F1", "labels"),
    "speaker_accuracy": TextMetricInfo(speaker_accuracy_score, True, "speaker identification accuracy", "labels"),
    "wer": TextMetricInfo(word_error, False, "word error rate (jiwer.wer, corpus level)", "text"),
    "cer": TextMetricInfo(character_error, False, "character error rate (jiwer.cer, corpus level)", "text"),
}
"""Metric name -> :class:`TextMetricInfo`; drives the shared property tests."""

__all__ = [
    "TEXT_METRICS",
    "TextMetricInfo",
    "character_error",
    "macro_f1_score",
    "speaker_accuracy_score",
    "ua_score",
    "wa_score",
    "word_error",
]
