"""Point metrics of transcripts (seed 004's CTC branch): WER and CER, through ``jiwer``.

Names say their direction: ``*_error`` goes down. WER / CER are corpus-level: total edits over
all pairs divided by total reference words / characters, as ``jiwer.wer`` / ``jiwer.cer``
compute them with their default transforms (WER: strip, collapse spaces, split on spaces; CER:
strip, then characters, spaces included). Case and punctuation are compared as given:
normalise both sides first (``heads.ctc`` normalises transcripts for the character vocabulary).
"""
from __future__ import annotations

from typing import Sequence


def text_pair(references: str | Sequence[str], hypotheses: str | Sequence[str]) -> tuple[list[str], list[str]]:
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

    refs, hyps = text_pair(references, hypotheses)
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

    refs, hyps = text_pair(references, hypotheses)
    if not any(r.strip() for r in refs):
        raise ValueError("character_error needs at least one reference character; every reference is empty")
    return float(jiwer.cer(refs, hyps))
