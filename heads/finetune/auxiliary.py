"""Paper 004's auxiliary heads inside fine-tuning: CTC on the frame outputs and a speaker
classifier behind gradient reversal on the pooled output; their targets, losses and scores.

The joint loss of one step is ``L = L_tasks + alpha L_CTC + L_adv`` (004, III.D: ``L = L_SER +
alpha L_ASR + beta L_sid``), where ``L_adv`` is :meth:`heads.grl.AdversaryHead.loss` (beta times
the cross-entropy, or the cross-entropy with beta at the reversal layer). The heads are the
public ones of :mod:`heads.ctc` and :mod:`heads.grl`; this module only connects them to the
backbone's outputs and to the corpus:

The columns follow ``train --ctc / --adversary`` (:mod:`heads.auxiliary`):

* CTC: the Train transcripts (label column ``text``) give the vocabulary
  (:meth:`heads.ctc.CharVocab.from_texts`, saved as ``vocab.json`` with the run). A clip without
  a transcript, or whose transcript normalises to nothing (``[LAUGHTER]``), has no CTC target
  (left out of the term and of WER). A training clip cropped to ``max_seconds`` leaves the term
  of that step (its transcript no longer fits the audio).
* Speaker: ``speaker`` is the corpus's group column (another name: that label column); the
  classes are the Train clips' values; clips of other values (the held-out speakers) have code
  -1 and are skipped by the loss and by the accuracy.

Scores: WER and CER (:mod:`heads.scoring.text`, jiwer) of the greedy decodes against the
normalised transcripts; speaker accuracy (:func:`heads.scoring.speaker_accuracy_score`) on the
clips whose speaker is a class; and, as ``train`` does, a fresh speaker probe on the Train
clips' pooled output. Scored by :mod:`heads.auxiliary`'s functions and written in
:mod:`heads.aux_metrics`' layout (:func:`aux_metrics`), the same as ``train``'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from data.corpus import Corpus
from heads.aux_metrics import SPLITS, adversary_entry, ctc_entry, probe_entry
from heads.auxiliary import (ADVERSARY, TEXT_COLUMN, adversary_splits, auxiliary_columns,
                             probe_split, speaker_probe, train_classes, transcript_splits)
from heads.config import TrainOptions, parse_adversary
from heads.ctc import CharVocab, CTCConfig, CTCHead, pad_targets
from heads.grl import AdversaryConfig, AdversaryHead

VOCAB_FILE = "vocab.json"


@dataclass
class AuxTargets:
    """Per dataset row: the raw transcript (None: none) and its CTC target; the adversary's
    class code (-1: not a Train value) and the classes.

    Attributes:
        vocab: the CTC vocabulary (None: no CTC head).
        texts: raw transcript per row.
        encoded: CTC target per row (None: no transcript).
        column: the adversary's label column ("" without one).
        classes: its classes (the Train values, sorted).
        codes: (n,) class code per row.
    """

    vocab: CharVocab | None
    texts: list[str | None]
    encoded: list[list[int] | None]
    column: str
    classes: tuple[str, ...]
    codes: np.ndarray

    @classmethod
    def build(cls, corpus: Corpus, ids: Sequence[str], train_rows: np.ndarray, *,
              ctc: float | None, adversary: str | None) -> AuxTargets:
        """Targets of ``ids`` (vocabulary and classes from the ``train_rows``), with the column
        rules of ``train --ctc / --adversary`` (:func:`heads.auxiliary.auxiliary_columns`,
        :func:`heads.auxiliary.train_classes`).

        Raises:
            ValueError: the corpus lacks the ``text`` or adversary column, no Train clip has a
                transcript, or fewer than two classes are in Train.
        """
        opts = TrainOptions.from_dict({"ctc": ctc or None, "adversary": adversary})
        columns = auxiliary_columns(corpus, ids, opts)
        n = len(ids)
        texts: list[str | None] = columns.get(TEXT_COLUMN, [None] * n)
        encoded: list[list[int] | None] = [None] * n
        vocab = None
        if ctc:
            train_texts = [texts[r] for r in train_rows if texts[r] is not None]
            if not train_texts:
                raise ValueError("the CTC head needs transcripts, and no Train clip has one "
                                 f"(column {TEXT_COLUMN!r} is empty there)")
            vocab = CharVocab.from_texts(train_texts)
            encoded = [None if t is None else vocab.encode(t) for t in texts]
        classes: tuple[str, ...] = ()
        codes = np.full(n, -1, dtype=np.int64)
        column = ""
        if adversary:
            column = parse_adversary(adversary)[0]
            split = np.full(n, "", dtype=object)
            split[np.asarray(train_rows, dtype=np.int64)] = "Train"
            classes, codes = train_classes(columns[ADVERSARY], split)
        return cls(vocab, texts, encoded, column, classes, codes)


class AuxHeads(nn.Module):
    """The CTC head (frames) and the adversary (pooled output); either may be absent."""

    def __init__(self, in_dim: int, *, vocab_size: int | None, n_classes: int | None,
                 beta: float = 0.0, mode: str = "reverse", beta_at: str = "loss") -> None:
        super().__init__()
        self.ctc = CTCHead(CTCConfig(in_dim=in_dim, vocab_size=vocab_size)) if vocab_size else None
        self.adversary = (AdversaryHead(AdversaryConfig(in_dim=in_dim, n_speakers=n_classes,
                                                        beta=beta, mode=mode, beta_at=beta_at))
                          if n_classes else None)

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild the heads."""
        return {"ctc": None if self.ctc is None else self.ctc.extra_state(),
                "adversary": None if self.adversary is None else self.adversary.extra_state()}


@dataclass
class AuxLosses:
    """One micro-batch's auxiliary terms (scalars with their graph) and the speaker hits."""

    ctc: Tensor | None
    adversary: Tensor | None
    hits: int = 0
    scored: int = 0


def aux_losses(aux: AuxHeads, targets: AuxTargets, h: Tensor, frames: Tensor, pooled: Tensor,
               rows: Sequence[int], whole: Sequence[bool]) -> AuxLosses:
    """The CTC and adversary terms of a micro-batch.

    Args:
        h: (B, T, H) frame outputs; frames: (B,) their true counts.
        pooled: (B, H) the masked mean the task heads read.
        rows: dataset rows of the clips; whole: False for a cropped clip (no CTC term).
    """
    ctc = adv = None
    hits = scored = 0
    if aux.ctc is not None:
        keep = [i for i, r in enumerate(rows) if whole[i] and targets.encoded[r] is not None]
        if keep:
            idx = torch.as_tensor(keep, device=h.device)
            logp = aux.ctc(h.index_select(0, idx))  # (b, T, V)
            tg, tl = pad_targets([targets.encoded[rows[i]] for i in keep])
            ctc = aux.ctc.loss(logp, frames.index_select(0, idx), tg.to(h.device), tl.to(h.device))
        else:
            ctc = h.sum() * 0.0
    if aux.adversary is not None:
        codes = torch.as_tensor(targets.codes[np.asarray(rows)], device=pooled.device)
        logits = aux.adversary(pooled)  # (B, S)
        adv = aux.adversary.loss(logits, codes)
        known = codes >= 0
        scored = int(known.sum())
        hits = int((logits.argmax(-1)[known] == codes[known]).sum()) if scored else 0
    return AuxLosses(ctc, adv, hits, scored)


@torch.no_grad()
def aux_predict(aux: AuxHeads, targets: AuxTargets, h: Tensor, frames: Tensor,
                pooled: Tensor) -> list[dict[str, Any]]:
    """Per clip of an eval batch: the greedy CTC transcript and the predicted class code."""
    out: list[dict[str, Any]] = [{} for _ in range(h.shape[0])]
    if aux.ctc is not None and targets.vocab is not None:
        decoded = aux.ctc.decode(aux.ctc(h), frames)
        for d, ids in zip(out, decoded):
            d["text"] = targets.vocab.decode(ids)
    if aux.adversary is not None:
        for d, code in zip(out, aux.adversary(pooled).argmax(-1).tolist()):
            d["code"] = int(code)
    return out


def _by_row(rows: Sequence[int], preds: Sequence[dict[str, Any] | None], key: str) -> dict[int, Any]:
    """Row -> the prediction ``key`` of the rows that have one."""
    return {int(r): p[key] for r, p in zip(rows, preds) if p is not None and key in p}


def aux_scores(targets: AuxTargets, rows: Sequence[int], preds: Sequence[dict[str, Any] | None],
               split: str = "val") -> dict[str, Any]:
    """WER / CER and speaker accuracy of one split's predictions (rows that failed: None), with
    the scorers of ``train`` (:func:`heads.auxiliary.transcript_splits`,
    :func:`heads.auxiliary.adversary_splits`).

    Returns:
        ``{"ctc": split block | None, "adversary": split block | None}`` (None: no such head);
        blocks as :func:`heads.aux_metrics.split_entry`, a score None when no clip of the split
        can be scored (no transcript, no speaker of the classes).
    """
    out: dict[str, Any] = {"ctc": None, "adversary": None}
    if targets.vocab is not None:
        hyp = _by_row(rows, preds, "text")
        out["ctc"] = transcript_splits(targets.texts, [hyp], {split: list(hyp)})[split]
    if targets.classes:
        code = _by_row(rows, preds, "code")
        out["adversary"] = adversary_splits(targets.codes, [code], {split: list(code)},
                                            targets.column)[split]
    return out


POOLED = "the fine-tuned backbone's pooled output (the masked mean the task heads read)"
"""What ``finetune``'s speaker probe reads."""


def aux_metrics(targets: AuxTargets, aux: AuxHeads,
                evaluated: dict[str, tuple[Tensor, np.ndarray, list]], *, alpha: float,
                adversary: str | None, mode: str, beta_at: str) -> dict[str, Any]:
    """metrics.json's ``aux`` block of a fine-tuning run (:mod:`heads.aux_metrics`' layout,
    the one ``train`` writes): the adversary's accuracy per evaluated split, the speaker probe
    on the Train clips' pooled output (:func:`heads.auxiliary.speaker_probe`, as ``train``), and
    WER / CER on Val and Test.

    Args:
        evaluated: split (``train`` / ``val`` / ``test``) -> ``(embeddings (m, H), the m rows,
            their auxiliary predictions)`` of the final model.
        alpha, adversary, mode, beta_at: the run's ``ctc``, ``adversary``, ``adversary_mode``
            and ``adversary_at``.
    """
    scores = {s: aux_scores(targets, rows, extra, s) for s, (_, rows, extra) in evaluated.items()}
    out: dict[str, Any] = {}
    if aux.adversary is not None and adversary:
        column, beta = parse_adversary(adversary)
        out["adversary"] = adversary_entry(
            column=column, beta=beta, mode=mode, beta_at=beta_at, classes=targets.classes,
            splits={s: scores[s]["adversary"] for s in SPLITS if s in scores})
        if "train" in evaluated:
            emb, rows, _ = evaluated["train"]
            rows = np.asarray(rows, dtype=np.int64)
            probe = speaker_probe(emb.float().cpu().numpy(), targets.codes[rows], np.arange(len(rows)))
            out["speaker_probe"] = probe_entry(column=column, train=probe_split([probe]),
                                               representation=POOLED)
    if aux.ctc is not None and targets.vocab is not None:
        out["ctc"] = ctc_entry(alpha=alpha, vocab_file=VOCAB_FILE, vocab_size=len(targets.vocab),
                               splits={s: scores[s]["ctc"] for s in ("val", "test") if s in scores})
    return out


__all__ = ["AuxHeads", "AuxLosses", "AuxTargets", "POOLED", "VOCAB_FILE", "aux_losses",
           "aux_metrics", "aux_predict", "aux_scores"]
