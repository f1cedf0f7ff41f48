"""Seed 004's auxiliary heads beside a task's results: for every run trained with a speaker
adversary (``--adversary``) or a CTC head (``--ctc``), what they measured: the adversary's speaker
accuracy (and, for head runs, the fresh linear probe of the speaker information left) and the
transcripts' WER / CER per split (lower is better).

Reads both layouts: ``train`` runs (``adversary.speaker_accuracy.<Split>``, ``probe_accuracy``)
and ``finetune`` runs (``adversary.<split>.speaker_accuracy``); ``ctc.<split>.wer_error`` in both.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reports.blocks import fmt

SPLITS = ("train", "val", "test")


def _speaker_accuracy(adv: dict[str, Any], split: str) -> float | None:
    if isinstance(adv.get("speaker_accuracy"), dict):  # train: per Split, each a score block
        block = adv["speaker_accuracy"].get(split.capitalize()) or {}
        return block.get("score")
    return (adv.get(split) or {}).get("speaker_accuracy")  # finetune: per split


def auxiliary_blocks(run_names: Iterable[str], runs: dict[str, dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """A table of the auxiliary heads' numbers of the given runs (nothing when none has one)."""
    rows = []
    for name in run_names:
        m = runs.get(name, {}).get("metrics", {})
        adv, ctc = m.get("adversary"), m.get("ctc")
        if not adv and not ctc:
            continue
        row = [name]
        if adv:
            mode = adv.get("mode") or ""
            row.append(f"{adv.get('column', 'speaker')} beta {adv.get('beta', '?')} {mode}".strip())
            row += [fmt(_speaker_accuracy(adv, s)) for s in SPLITS]
            probe = adv.get("probe_accuracy") or {}
            row.append(fmt(probe.get("score")) + (f" (chance {fmt(adv['chance'], 3)})"
                                                  if adv.get("chance") else ""))
        else:
            row += ["-"] * 5
        if ctc:
            row.append(f"alpha {ctc.get('alpha', '?')}")
            for s in ("val", "test"):
                block = ctc.get(s) or {}
                row.append(f"{fmt(block.get('wer_error'))} / {fmt(block.get('cer_error'))}")
        else:
            row += ["-"] * 3
        rows.append(row)
    if not rows:
        return []
    return [{"kind": "p", "text": "Auxiliary heads (seed 004): the speaker adversary's accuracy "
                                  "on clips of Train speakers per split (held-out speakers are "
                                  "no class of it: `-`), the linear probe of the speaker "
                                  "information left in the representation (head runs), and "
                                  "the CTC head's WER / CER (lower is better)."},
            {"kind": "table",
             "headers": ["run", "adversary", "speaker acc. Train", "Val", "Test",
                         "speaker probe", "CTC", "Val WER / CER", "Test WER / CER"],
             "rows": rows, "align": ["l", "l", "r", "r", "r", "r", "l", "r", "r"]}]
