"""WA, UA, macro-F1, speaker accuracy against sklearn; WER/CER against jiwer and a naive
Levenshtein distance written here."""
from __future__ import annotations

import jiwer
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from heads.scoring import (
    METRICS,
    character_error,
    macro_f1_score,
    speaker_accuracy_score,
    uar_score as ua_score,
    wa_score,
    word_error,
)

TEXT_METRICS = {n: i for n, i in METRICS.items() if i.target in ("classification", "text")}


def levenshtein(a: list, b: list) -> int:
    """Edit distance by the textbook dynamic programme (unit costs)."""
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, start=1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
            prev, d[j] = d[j], cur
    return d[len(b)]


def naive_rate(refs: list[str], hyps: list[str], unit) -> float:
    edits = sum(levenshtein(unit(r), unit(h)) for r, h in zip(refs, hyps))
    return edits / sum(len(unit(r)) for r in refs)


PAIRS = [
    (["the cat sat on the mat"], ["the cat sat on mat"]),
    (["hello world", "good morning"], ["hello word", "good morning to you"]),
    (["excuse me", "do you have your forms", "yeah"], ["excuse", "do you have you forms", "yeah yeah"]),
    (["a b c", "d"], ["x y z w", ""]),
    (["i miss him", ""], ["i miss him", "oh"]),  # an empty reference: its words are insertions
    (["get out"], ["got out"]),
]


@pytest.mark.parametrize("refs, hyps", PAIRS)
def test_wer_equals_jiwer_and_the_naive_count(refs, hyps):
    got = word_error(refs, hyps)
    assert got == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert got == pytest.approx(naive_rate(refs, hyps, str.split), abs=1e-12)


@pytest.mark.parametrize("refs, hyps", PAIRS)
def test_cer_equals_jiwer_and_the_naive_count(refs, hyps):
    got = character_error(refs, hyps)
    assert got == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    assert got == pytest.approx(naive_rate(refs, hyps, list), abs=1e-12)


def test_wer_cer_by_hand():
    assert word_error("the cat sat", "the cat sat") == 0.0
    assert word_error("a b c d", "a x c") == 0.5  # one substitution, one deletion over 4 words
    assert word_error("a", "b c d") == 3.0  # can exceed 1
    assert character_error("kitten", "sitting") == pytest.approx(3 / 6)


def test_text_errors_refuse_bad_input():
    with pytest.raises(ValueError, match="pair up"):
        word_error(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="every reference is empty"):
        word_error(["", " "], ["a", "b"])
    with pytest.raises(ValueError, match="every reference is empty"):
        character_error([""], ["a"])
    with pytest.raises(ValueError, match="not str"):
        character_error(["a", None], ["a", "b"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty"):
        word_error([], [])


CLASS_CASES = [
    ([0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 3, 1, 1, 0, 3]),
    ([0, 0, 0, 0, 1, 1, 2, 3], [0, 0, 0, 1, 1, 1, 3, 3]),  # imbalanced, one class never right
    (["neu", "hap", "sad", "ang", "neu"], ["neu", "neu", "neu", "ang", "hap"]),
    ([1, 1, 1], [2, 2, 2]),  # a predicted class that does not exist
]


def naive_recalls(t, p, classes):
    return [sum(1 for a, b in zip(t, p) if a == b == c) / max(1, sum(1 for a in t if a == c)) for c in classes]


@pytest.mark.parametrize("t, p", CLASS_CASES)
def test_label_metrics_equal_sklearn(t, p):
    classes = sorted(set(t) | set(p))
    assert wa_score(t, p) == pytest.approx(accuracy_score(t, p))
    assert ua_score(t, p) == pytest.approx(recall_score(t, p, average="macro", labels=classes, zero_division=0))
    assert ua_score(t, p) == pytest.approx(np.mean(naive_recalls(t, p, classes)))
    assert macro_f1_score(t, p) == pytest.approx(f1_score(t, p, average="macro", labels=classes, zero_division=0))
    assert speaker_accuracy_score(t, p) == pytest.approx(accuracy_score(t, p))


def test_labels_restrict_the_classes():
    t, p = [0, 0, 1, 1], [0, 1, 1, 1]
    assert ua_score(t, p, labels=[0, 1, 2]) == pytest.approx(
        recall_score(t, p, labels=[0, 1, 2], average="macro", zero_division=0))
    assert macro_f1_score(t, p, labels=[0, 1, 2]) == pytest.approx(
        f1_score(t, p, labels=[0, 1, 2], average="macro", zero_division=0))
    with pytest.raises(ValueError, match="non-empty"):
        ua_score(t, p, labels=[])


def test_wa_by_the_papers_formula():
    rng = np.random.default_rng(4)
    t = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.7, t, rng.integers(0, 4, 200))
    n_correct = sum(int(np.sum((t == k) & (p == k))) for k in range(4))  # sum_k N_k^correct
    assert wa_score(t, p) == n_correct / 200


@pytest.mark.parametrize("name", sorted(TEXT_METRICS))
def test_registry_directions_and_perfect_scores(name):
    info = TEXT_METRICS[name]
    assert info.greater_is_better == (name not in ("wer", "cer"))
    if info.target == "text":
        assert info.fn(["ab cd", "e"], ["ab cd", "e"]) == 0.0
        assert info.fn(["ab cd", "e"], ["xb", "e f"]) > 0.0
    else:
        assert info.fn([0, 1, 2], [0, 1, 2]) == 1.0
        assert info.fn([0, 1, 2], [1, 2, 0]) == 0.0
    suffix = "_score" if info.greater_is_better else "_error"
    assert info.fn.__name__.endswith(suffix)


@pytest.mark.parametrize("fn", [wa_score, ua_score, macro_f1_score])
def test_label_metrics_refuse_bad_input(fn):
    with pytest.raises(ValueError, match="same length"):
        fn([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="NaN"):
        fn([0.0, np.nan], [0.0, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        fn([[0, 1]], [[0, 1]])
