"""THE layout of seed 004's auxiliary heads' numbers in a run's metrics.json and a study's
cv.json, written by both stages (``train --adversary / --ctc`` on cached features,
``finetune --adversary / --ctc``) and read by the cross-validation summaries, the CLI and the
report. Nothing else builds or parses these blocks.

metrics.json (one run)::

    "aux": {HEAD: {"measures": TEXT, "settings": {...}, "aggregate": TEXT,
                   SPLIT: {QUANTITY: number | null, ..., "n": clips scored,
                           ["note": why nothing was scored], ["seeds": {QUANTITY: [per seed]}]}}}

cv.json (a study, :func:`heads.crossval.aux_over_folds`)::

    "aux": {HEAD: {"measures": TEXT, SPLIT: {QUANTITY: {"mean", "std", "folds"}}}}

* HEAD is one of :data:`HEADS`: ``adversary`` (the speaker classifier trained beside the task,
  behind gradient reversal or not), ``speaker_probe`` (a fresh linear classifier of the speaker
  fitted after training on the pooled representation) and ``ctc`` (the transcript head).
* SPLIT is ``train``, ``val`` or ``test``, lower case in both files; a split is present when
  the stage scored it (with ``n`` 0, a null value and a ``note`` when none of its clips could
  be scored: the held-out speakers of a fold are no class of the adversary).
* QUANTITY names say their direction (``*_accuracy`` up, ``*_error`` down); the quantities of
  each head are :data:`HEADS`' values. A value is the mean over the run's seeds (finetune: one).

Runs written before this layout (the heads' blocks at the top level of metrics.json:
``adversary.speaker_accuracy.<Split>``, ``adversary.<split>.speaker_accuracy``, ``ctc.<split>``)
are not read: :func:`older_layout` names them so that the report and the CLI can say so.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

AUX_KEY = "aux"
SPLITS = ("train", "val", "test")
HEADS: dict[str, tuple[str, ...]] = {
    "adversary": ("speaker_accuracy",),
    "speaker_probe": ("speaker_accuracy", "majority_accuracy"),
    "ctc": ("wer_error", "cer_error"),
}
"""Every auxiliary head and the quantities of its split blocks."""

OLD_KEYS = ("adversary", "ctc")
"""Top-level metrics.json keys of the layouts before :data:`AUX_KEY`."""


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def split_entry(per_seed: Mapping[str, Sequence[float | None]], n: int,
                note: str | None = None, **extra: Any) -> dict[str, Any]:
    """One split's block: each quantity's mean over seeds (None when no seed scored), ``n``.

    Args:
        per_seed: quantity -> its value per seed (one value for one run).
        n: the clips scored.
        note: why nothing could be scored (kept only when ``n`` is 0).
        extra: further counts (``n_fit``).

    Example:
        >>> split_entry({"wer_error": [0.5, 0.25]}, 4)
        {'wer_error': 0.375, 'n': 4, 'seeds': {'wer_error': [0.5, 0.25]}}
        >>> split_entry({"speaker_accuracy": [None]}, 0, note="no Train speaker")
        {'speaker_accuracy': None, 'n': 0, 'note': 'no Train speaker'}
    """
    out: dict[str, Any] = {}
    seeds = {}
    for q, values in per_seed.items():
        vals = [_finite(v) for v in values]
        ok = [v for v in vals if v is not None]
        out[q] = sum(ok) / len(ok) if ok else None
        seeds[q] = vals
    out["n"] = int(n)
    out.update(extra)
    if note is not None and not n:
        out["note"] = note
    if any(len(v) > 1 for v in seeds.values()):
        out["seeds"] = seeds
    return out


def _aggregate(seeds: int) -> str:
    return "one run" if seeds == 1 else f"mean over {seeds} seeds (each seed's value under seeds)"


def adversary_entry(*, column: str, beta: float, mode: str, beta_at: str,
                    classes: Sequence[str], splits: Mapping[str, dict[str, Any]],
                    seeds: int = 1) -> dict[str, Any]:
    """The ``adversary`` head: its settings and its own accuracy per split."""
    return {"measures": (f"the adversary's own {column} accuracy over the clips whose {column} is "
                         f"a Train {column} (its classes); with beta on the loss (paper 004's "
                         f"equation) it learns at rate beta, so at beta 0 it is untrained"),
            "settings": {"column": column, "beta": float(beta), "mode": mode, "beta_at": beta_at,
                         "classes": list(classes), "chance": 1.0 / len(classes)},
            "aggregate": _aggregate(seeds), **{s: splits[s] for s in SPLITS if s in splits}}


def probe_entry(*, column: str, train: dict[str, Any], representation: str,
                seeds: int = 1) -> dict[str, Any]:
    """The ``speaker_probe`` head: a fresh logistic regression of ``column`` on the trained
    representation, fitted on every other Train clip of each class and scored on the rest
    (:func:`heads.auxiliary.speaker_probe`); its one split is ``train``."""
    return {"measures": (f"the {column} information left in {representation}: a fresh logistic "
                         f"regression (standardised inputs) fitted on every other Train clip of "
                         f"each {column} and scored on the others; majority_accuracy is always "
                         f"predicting the most frequent fitted {column}"),
            "settings": {"column": column, "model": "sklearn LogisticRegression(max_iter=2000)",
                         "representation": representation},
            "aggregate": _aggregate(seeds), "train": train}


def ctc_entry(*, alpha: float, vocab_file: str, vocab_size: int,
              splits: Mapping[str, dict[str, Any]], seeds: int = 1) -> dict[str, Any]:
    """The ``ctc`` head: its settings and corpus-level WER / CER per split (lower is better)."""
    return {"measures": ("corpus-level WER and CER (jiwer) of the greedy CTC decodes against the "
                         "transcripts, both normalised by heads.ctc.normalise_transcript, over "
                         "the clips with a non-empty transcript"),
            "settings": {"alpha": float(alpha), "vocab_file": vocab_file,
                         "vocab_size": int(vocab_size)},
            "aggregate": _aggregate(seeds), **{s: splits[s] for s in SPLITS if s in splits}}


def run_aux(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A run's auxiliary heads (``{}`` without any, or in a layout before this one)."""
    return dict(metrics.get(AUX_KEY) or {})


def older_layout(metrics: Mapping[str, Any]) -> bool:
    """Whether a run's metrics.json holds auxiliary heads in a layout before this one."""
    return AUX_KEY not in metrics and any(isinstance(metrics.get(k), dict) for k in OLD_KEYS)


OLDER_TEXT = ("written by an older version of this project (the auxiliary heads' numbers at the "
              "top level of metrics.json, not under \"aux\"), which this version does not read; "
              "a new run writes them under \"aux\"")


def quantities(aux: Mapping[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    """``(head, split, quantity, value)`` of a run's or a study's ``aux`` block, in the order
    of :data:`HEADS`, :data:`SPLITS` and each head's quantities (the keys this layout knows)."""
    for head, names in HEADS.items():
        entry = aux.get(head)
        if not isinstance(entry, Mapping):
            continue
        for split in SPLITS:
            block = entry.get(split)
            if not isinstance(block, Mapping):
                continue
            for q in names:
                if q in block:
                    yield head, split, q, block[q]


__all__ = ["AUX_KEY", "HEADS", "OLDER_TEXT", "SPLITS", "adversary_entry", "ctc_entry",
           "older_layout", "probe_entry", "quantities", "run_aux", "split_entry"]
