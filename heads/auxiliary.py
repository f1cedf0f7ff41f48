"""The auxiliary labels and scores of seed 004's extra heads: a speaker adversary and a CTC
transcript head trained beside a torch head (``train --adversary speaker:BETA``, ``--ctc ALPHA``).

Labels: the adversary's column per clip (``speaker``: the corpus's group column; any other
name: a label column) and the transcript (the corpus's ``text`` column), aligned with a
dataset's rows (:func:`auxiliary_columns`). The adversary's classes are the values seen in
Train (:func:`train_classes`); a clip whose value is not among them has no adversary label.

What "speaker accuracy" means here. Paper 004 reports a "speaker accuracy" (Table III: 0.288
to 0.321) without saying on which clips it is measured; its split trains on 9 speakers and
tests on 01F, a speaker the classifier has no class for. In a speaker-independent split (the
paper's, and every ``--cv`` fold of this project: Val is the held-out speaker's partner) no
Val or Test clip has a Train speaker, so a classifier over Train speakers cannot be right on
them. We report two numbers, each saying what it is:

* the ``adversary`` head's ``speaker_accuracy``: the adversary's own accuracy on the clips whose
  speaker is a Train speaker, per split: Train always; Val / Test only where they share
  speakers with Train (else null, n = 0). With the paper's equation (beta on the loss) the
  classifier learns at rate beta, so at beta = 0 it is untrained: this number is the paper's
  kind, not a measure of what the representation holds.
* the ``speaker_probe`` head's ``speaker_accuracy``: speaker information left in the trained
  representation (``train``: the head's shared representation; ``finetune``: the pooled
  backbone output). A fresh logistic regression (scikit-learn, standardised inputs) is fitted
  on the representation of half of each Train speaker's clips (every other clip in row order)
  and scored on the other half (:func:`speaker_probe`). This is the number that compares
  beta = 0 with beta = 1.

Transcripts are scored after :func:`heads.ctc.normalise_transcript` (what the vocabulary is
built on), over the clips with a non-empty normalised reference, by jiwer's corpus-level WER
and CER (:mod:`heads.scoring.text`).

Both stages score with :func:`adversary_splits`, :func:`probe_split` / :func:`speaker_probe` and
:func:`transcript_splits`, and write the blocks of :mod:`heads.aux_metrics` (``train``:
:func:`score_adversary`, :func:`score_transcripts`; ``finetune``:
:func:`heads.finetune.auxiliary.aux_metrics`).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from data.corpus import Corpus
from heads.aux_metrics import adversary_entry, ctc_entry, probe_entry, split_entry
from heads.config import SPEAKER_COLUMN, SPLITS, TrainOptions, parse_adversary
from heads.ctc import normalise_transcript
from heads.scoring import character_error, speaker_accuracy_score, word_error

log = logging.getLogger(__name__)

TEXT_COLUMN = "text"
ADVERSARY = "adversary"
"""Key of the adversary's column in :func:`auxiliary_columns`."""


def auxiliary_columns(corpus: Corpus, ids: Sequence[str], opts: TrainOptions) -> dict[str, list]:
    """The per-row columns the auxiliary heads of ``opts`` need, aligned with ``ids``.

    Returns:
        ``{"adversary": [value or None, ...]}`` with ``opts.adversary`` and
        ``{"text": [transcript or None, ...]}`` with ``opts.ctc``; empty otherwise.

    Raises:
        ValueError: the column is missing or empty (names the corpus, the columns found and
            what to do).
    """
    out: dict[str, list] = {}
    if opts.adversary is not None:
        column, _ = parse_adversary(opts.adversary)
        if column == SPEAKER_COLUMN:
            values = corpus.clips["group"].reindex(list(ids))
        elif column in corpus.labels.columns:
            values = corpus.labels[column].reindex(list(ids))
        else:
            raise ValueError(
                f"--adversary {opts.adversary}: the {corpus.layout} corpus at {corpus.root} has no "
                f"column {column!r}; use speaker (the clips' speaker/group column) or one of the "
                f"label columns {list(corpus.labels.columns)}")
        cleaned = [None if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == ""
                   else str(v).strip() for v in values.tolist()]
        if not any(c is not None for c in cleaned):
            raise ValueError(
                f"--adversary {opts.adversary}: no clip of the {corpus.layout} corpus at "
                f"{corpus.root} has a {column} value; a csv corpus names its speaker column "
                f"with extract --group-column COL")
        out[ADVERSARY] = cleaned
    if opts.ctc is not None:
        if TEXT_COLUMN not in corpus.labels.columns:
            raise ValueError(
                f"--ctc {opts.ctc}: the {corpus.layout} corpus at {corpus.root} has no "
                f"{TEXT_COLUMN!r} column of transcripts (iemocap has one; a csv corpus names it "
                f"with extract --text-column COL); label columns: {list(corpus.labels.columns)}")
        texts = corpus.labels[TEXT_COLUMN].reindex(list(ids)).tolist()
        out[TEXT_COLUMN] = [t if isinstance(t, str) and normalise_transcript(t) else None
                            for t in texts]
    return out


def train_classes(values: Sequence[str | None], split: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """The adversary's classes (the values seen in Train, sorted) and every row's code.

    Returns:
        ``(classes, codes (n,) int64)``; -1 for a row without a value or with one not seen in
        Train.

    Raises:
        ValueError: fewer than two classes in Train.

    Example:
        >>> train_classes(["a", "b", None, "c"], np.array(["Train", "Train", "Train", "Test"]))
        (('a', 'b'), array([ 0,  1, -1, -1]))
    """
    split = np.asarray(split)
    classes = tuple(sorted({v for v, s in zip(values, split) if v is not None and s == "Train"}))
    if len(classes) < 2:
        raise ValueError(f"the adversary needs at least 2 classes (speakers) in Train; Train has "
                         f"{list(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index.get(v, -1) if v is not None else -1 for v in values], np.int64)


def probe_halves(codes: np.ndarray, train_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train rows split per class: every other row of each class (in row order) to fit, the
    rest to score; rows without a class are left out.

    Example:
        >>> probe_halves(np.array([0, 0, 1, 1, 0, -1]), np.arange(6))
        (array([0, 2, 4]), array([1, 3]))
    """
    fit, score = [], []
    rows = np.asarray(train_rows)
    for c in np.unique(codes[rows]):
        if c < 0:
            continue
        mine = rows[codes[rows] == c]
        fit.append(mine[0::2])
        score.append(mine[1::2])
    cat = (lambda parts: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64))
    return cat(fit), cat(score)


def speaker_probe(hidden: np.ndarray, codes: np.ndarray, train_rows: np.ndarray) -> dict[str, Any]:
    """Accuracy of a fresh linear classifier of the adversary's classes on a representation.

    A logistic regression (scikit-learn defaults, lbfgs, 2,000 iterations) on the features
    standardised with the fitting rows' moments, fitted and scored on :func:`probe_halves`.

    Args:
        hidden: (n, H) the trained head's representation of every row.
        codes: (n,) class codes, -1 for none.
        train_rows: the Train rows.

    Returns:
        ``{"score", "n_fit", "n_scored", "majority"}`` (``majority``: the accuracy of always
        predicting the most frequent fitted class on the scored rows); score NaN when a half
        is empty.
    """
    from sklearn.linear_model import LogisticRegression

    fit, scored = probe_halves(codes, train_rows)
    out: dict[str, Any] = {"n_fit": len(fit), "n_scored": len(scored)}
    if len(fit) == 0 or len(scored) == 0 or len(np.unique(codes[fit])) < 2:
        return {**out, "score": float("nan"), "majority": float("nan")}
    X = np.asarray(hidden, dtype=np.float64)
    mean, std = X[fit].mean(axis=0), X[fit].std(axis=0)
    std[std < 1e-8] = 1.0
    Z = (X - mean) / std
    model = LogisticRegression(max_iter=2000).fit(Z[fit], codes[fit])
    majority = np.bincount(codes[fit]).argmax()
    return {**out, "score": float(speaker_accuracy_score(codes[scored], model.predict(Z[scored]))),
            "majority": float(np.mean(codes[scored] == majority))}


def adversary_splits(codes: np.ndarray, predicted: Sequence[Any],
                     rows_by_split: Mapping[str, Sequence[int]], column: str
                     ) -> dict[str, dict[str, Any]]:
    """The adversary's own accuracy per split (:func:`heads.aux_metrics.split_entry` blocks).

    Args:
        codes: (n,) class code per row, -1 for none (:func:`train_classes`).
        predicted: per seed, the predicted code of each row (anything indexable by row).
        rows_by_split: split name (``train`` / ``val`` / ``test``) -> the rows scored there;
            rows without a class are left out.
        column: the adversary's column (for the note of a split without any class).
    """
    codes = np.asarray(codes)
    out: dict[str, dict[str, Any]] = {}
    for split, rows in rows_by_split.items():
        rows = [int(r) for r in rows if codes[int(r)] >= 0]
        if not rows:
            out[split] = split_entry(
                {"speaker_accuracy": [None]}, 0,
                note=f"no {split} clip has a Train {column}: a classifier over the Train "
                     f"{column}s cannot be scored there")
            continue
        truth = codes[rows]
        out[split] = split_entry({"speaker_accuracy": [
            speaker_accuracy_score(truth, np.asarray([p[r] for r in rows])) for p in predicted]},
            len(rows))
    return out


def probe_split(probes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``speaker_probe`` head's ``train`` block from :func:`speaker_probe`'s dicts (one per
    seed)."""
    return split_entry({"speaker_accuracy": [p["score"] for p in probes],
                        "majority_accuracy": [p["majority"] for p in probes]},
                       probes[0]["n_scored"],
                       note="the Train clips give no two halves to fit and score",
                       n_fit=probes[0]["n_fit"])


def transcript_splits(references: Sequence[str | None], hypotheses: Sequence[Any],
                      rows_by_split: Mapping[str, Sequence[int]]) -> dict[str, dict[str, Any]]:
    """Corpus-level WER and CER per split (jiwer, :mod:`heads.scoring.text`; lower is better).

    Args:
        references: the raw transcript of each row (None: none); normalised here as the
            vocabulary is (:func:`heads.ctc.normalise_transcript`), and a row whose transcript
            normalises to nothing is not scored.
        hypotheses: per seed, the greedy decode of each row (anything indexable by row).
        rows_by_split: split name -> the rows decoded there.
    """
    out: dict[str, dict[str, Any]] = {}
    for split, rows in rows_by_split.items():
        scored = [(int(r), normalise_transcript(references[int(r)])) for r in rows
                  if references[int(r)]]
        scored = [(r, ref) for r, ref in scored if ref]
        if not scored:
            out[split] = split_entry({"wer_error": [None], "cer_error": [None]}, 0,
                                     note=f"no {split} clip has a transcript")
            continue
        ref = [t for _, t in scored]
        hyps = [[h[r] for r, _ in scored] for h in hypotheses]
        out[split] = split_entry({"wer_error": [word_error(ref, h) for h in hyps],
                                  "cer_error": [character_error(ref, h) for h in hyps]},
                                 len(scored))
    return out


def _split_rows(split: np.ndarray) -> dict[str, np.ndarray]:
    """``train`` / ``val`` / ``test`` -> the rows of that split, for the splits with rows."""
    split = np.asarray(split)
    rows = {s.lower(): np.flatnonzero(split == s) for s in SPLITS}
    return {s: r for s, r in rows.items() if len(r)}


PROBED_HEAD = "the trained head's shared representation (pooled)"
"""What ``train``'s speaker probe reads (:meth:`heads.nets.HeadNet.tap`)."""


def score_adversary(seeds: list[dict[str, Any]], split: np.ndarray, *, spec: str,
                    mode: str) -> dict[str, Any]:
    """The ``adversary`` and ``speaker_probe`` heads of a ``train`` run over its seeds, in
    :mod:`heads.aux_metrics`' layout.

    Args:
        seeds: per seed the adversary's outputs: ``classes``, ``codes`` (n,), ``predicted``
            (n,) and ``probe`` (:func:`speaker_probe`'s dict).
        split: (n,) the split of every row (``Train`` / ``Val`` / ``Test``).
        spec: ``COLUMN:BETA``; mode: ``reverse`` | ``forward``.
    """
    column, beta = parse_adversary(spec)
    first = seeds[0]
    splits = adversary_splits(first["codes"], [o["predicted"] for o in seeds], _split_rows(split),
                              column)
    return {"adversary": adversary_entry(column=column, beta=beta, mode=mode, beta_at="loss",
                                         classes=first["classes"], splits=splits,
                                         seeds=len(seeds)),
            "speaker_probe": probe_entry(column=column, train=probe_split([o["probe"] for o in seeds]),
                                         representation=PROBED_HEAD, seeds=len(seeds))}


def score_transcripts(references: Sequence[str | None], hypotheses_by_seed: list[list[str]],
                      split: np.ndarray, *, alpha: float, vocab_file: str, vocab_size: int
                      ) -> dict[str, Any]:
    """The ``ctc`` head of a ``train`` run: WER and CER on Val and Test over seeds, in
    :mod:`heads.aux_metrics`' layout."""
    rows = {s: r for s, r in _split_rows(split).items() if s != "train"}
    return ctc_entry(alpha=alpha, vocab_file=vocab_file, vocab_size=vocab_size,
                     splits=transcript_splits(references, hypotheses_by_seed, rows),
                     seeds=len(hypotheses_by_seed))


__all__ = ["ADVERSARY", "PROBED_HEAD", "TEXT_COLUMN", "adversary_splits", "auxiliary_columns",
           "probe_halves", "probe_split", "score_adversary", "score_transcripts", "speaker_probe",
           "train_classes", "transcript_splits"]
