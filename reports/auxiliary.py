"""Seed 004's auxiliary heads beside a task's results: for every run trained with a speaker
adversary (``--adversary``) or a CTC head (``--ctc``), ``train`` or ``finetune``, what they
measured: the adversary's speaker accuracy per split, the fresh linear probe of the speaker
information left, and the transcripts' WER / CER per split (lower is better).

Reads the one layout of :mod:`heads.aux_metrics` (metrics.json's ``aux``). A run written in
an older layout is named in a sentence saying so, with no numbers: this version does not read
them (:data:`heads.aux_metrics.OLDER_TEXT`).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from heads.aux_metrics import OLDER_TEXT, older_layout, run_aux
from reports.blocks import fmt


def _value(entry: dict[str, Any] | None, split: str, quantity: str) -> Any:
    return ((entry or {}).get(split) or {}).get(quantity)


def auxiliary_blocks(run_names: Iterable[str], runs: dict[str, dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """A table of the auxiliary heads' numbers of the given runs (nothing when none has one),
    and a sentence naming the runs in an older layout."""
    rows, old = [], []
    for name in run_names:
        m = runs.get(name, {}).get("metrics", {})
        if older_layout(m):
            old.append(name)
            continue
        aux = run_aux(m)
        adv, probe, ctc = aux.get("adversary"), aux.get("speaker_probe"), aux.get("ctc")
        if not adv and not ctc:
            continue
        row = [name]
        if adv:
            st = adv.get("settings") or {}
            row.append(f"{st.get('column', 'speaker')} beta {st.get('beta', '?')} "
                       f"{st.get('mode') or ''}".strip())
            row += [fmt(_value(adv, s, "speaker_accuracy")) for s in ("train", "val", "test")]
            chance = st.get("chance")
            row.append(fmt(_value(probe, "train", "speaker_accuracy"))
                       + (f" (chance {fmt(chance, 3)})" if chance else ""))
        else:
            row += ["-"] * 5
        if ctc:
            row.append(f"alpha {(ctc.get('settings') or {}).get('alpha', '?')}")
            row += [f"{fmt(_value(ctc, s, 'wer_error'))} / {fmt(_value(ctc, s, 'cer_error'))}"
                    for s in ("val", "test")]
        else:
            row += ["-"] * 3
        rows.append(row)
    out: list[dict[str, Any]] = []
    if rows:
        out += [{"kind": "p", "text": "Auxiliary heads (seed 004): the speaker adversary's "
                                      "accuracy on clips of Train speakers per split (held-out "
                                      "speakers are no class of it: `-`), a fresh linear probe "
                                      "of the speaker information left in the representation "
                                      "(scored on held-out Train clips), and the CTC head's "
                                      "WER / CER (lower is better)."},
                {"kind": "table",
                 "headers": ["run", "adversary", "speaker acc. Train", "Val", "Test",
                             "speaker probe", "CTC", "Val WER / CER", "Test WER / CER"],
                 "rows": rows, "align": ["l", "l", "r", "r", "r", "r", "l", "r", "r"]}]
    if old:
        out.append({"kind": "p", "text": f"Auxiliary heads of {', '.join(old)}: {OLDER_TEXT}."})
    return out
