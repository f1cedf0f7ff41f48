"""Reader for IEMOCAP as it ships (``IEMOCAP_full_release``, seed paper 004).

::

    ROOT/Session1 .. Session5/
        sentences/wav/<dialog>/<utterance>.wav         16 kHz utterance audio
        dialog/EmoEvaluation/<dialog>.txt              [start - end]<TAB>utt<TAB>emo<TAB>[v, a, d]
        dialog/transcriptions/<dialog>.txt             utt [start-end]: text

``ROOT`` may also be the folder that holds ``IEMOCAP_full_release/``.

Clip ids are the utterance names (``Ses01F_impro01_M003``). The speaker is the session plus the
gender letter in front of the utterance number, not the one in the dialog name: in
``Ses01F_impro01_M003`` the dialog's first actor is the woman of session 1 but the utterance is
spoken by the man, speaker ``01M``. ``Corpus.clips["group"]`` is that speaker; every clip's
split is ``''`` (IEMOCAP has no official split: folds come from :mod:`data.folds`).

Label columns (one row per utterance of an EmoEvaluation file):

* ``emotion``: the majority code as written (``neu hap exc sad ang fru fea sur dis oth xxx``).
* ``emotion4``: the usual 4-class set, ``neutral``/``happy``/``sad``/``angry`` with excited
  merged into happy; empty for every other code.
* ``emotion4_nomerge``: the same without the merge (excited is empty).
* ``valence``, ``activation``, ``dominance``: the dimensional ratings ``[v, a, d]`` (1 to 5).
* ``speaker`` (``01F`` .. ``05M``), ``gender`` (``F``/``M``), ``session`` (``01`` .. ``05``),
  ``dialog`` (``Ses01F_impro01``), ``mode`` (``improvised``/``scripted``).
* ``text``: the transcript line, as written (markers such as ``[LAUGHTER]`` kept; normalising
  text for a character model is the model's business, see ``heads.ctc``).

What real copies contain, and the rule for each (every count is noted in ``Corpus.problems``,
which ``extract`` logs; nothing here stops the read):

* macOS ``._*`` files (AppleDouble) anywhere: skipped, counted.
* EmoEvaluation lines: the ``%`` header lines and blank lines are skipped silently; the
  evaluator lines (``C-E1:``, ``A-E3:``, ``C-F1:`` ...) are skipped and counted; any other line
  that is not an utterance line is skipped, counted and shown (file and line number).
* An utterance name that does not look like ``SesNN[FM]_..._[FM]NNN``: skipped, counted.
* The code ``xxx`` (the evaluators reached no majority): the clip is kept (its audio, ratings
  and transcript are usable) with ``emotion = 'xxx'`` and empty ``emotion4``; counted.
* Ratings that are not numbers or lie outside [1, 5]: kept as NaN / as written, counted.
* The same utterance on two lines: identical lines are merged; lines that disagree keep the
  first one; both counted.
* A label line whose wav is missing: left out of the corpus, counted. A wav without a label
  line: kept without labels, counted.
* A transcription line that is not ``utt [start-end]: text``: skipped, counted. An utterance
  without a transcription line: ``text`` is empty, counted. Transcription lines of segments
  that are not utterances (``Ses01F_impro01_MXX0``, no wav, no label) join nothing.
* A file that is not UTF-8: read as Latin-1, counted.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.corpora.registry import register_layout
from data.corpus import INDEX_NAME, Corpus, CorpusError, assemble_corpus, natural_key
from data.tasks import IEMOCAP4_CLASSES, IEMOCAP_VAD

logger = logging.getLogger(__name__)

RELEASE_DIR = "IEMOCAP_full_release"
SESSION_RE = re.compile(r"^Session(\d+)$")

EMOTION_CODES = ("neu", "hap", "exc", "sad", "ang", "fru", "fea", "sur", "dis", "oth", "xxx")
"""Majority codes of the EmoEvaluation files; ``xxx`` means the evaluators had no majority."""

NO_MAJORITY = "xxx"

EMOTION4 = IEMOCAP4_CLASSES
"""The usual 4-class set, in the order the ``iemocap4`` task uses."""

MERGED = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
"""Code -> 4-class name with excited merged into happy (column ``emotion4``)."""

UNMERGED = {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry"}
"""Code -> 4-class name without the merge (column ``emotion4_nomerge``)."""

DIMENSIONS = IEMOCAP_VAD
"""The ``[v, a, d]`` ratings, in file order."""

RATING_RANGE = (1.0, 5.0)

UTTERANCE_RE = re.compile(
    r"^Ses(?P<session>\d{2})(?P<first>[FM])_(?P<kind>impro|script)[^_\s]*(?:_[^_\s]+)*?"
    r"_(?P<gender>[FM])(?P<number>\d+)$"
)
"""An utterance name: session, the dialog's first actor, impro/script, the speaker's gender."""

_EVAL_LINE = re.compile(
    r"^\[\s*(?P<start>[-+0-9.eE]+)\s*-\s*(?P<end>[-+0-9.eE]+)\s*\]\s+(?P<utt>\S+)\s+"
    r"(?P<emo>\S+)\s+\[(?P<vad>[^\]]*)\]\s*$"
)
_EVALUATOR_LINE = re.compile(r"^[A-Z]+-[A-Z]+\d*\s*:")
_TRANSCRIPT_LINE = re.compile(r"^(?P<utt>\S+)\s+\[(?P<times>[^\]]*)\]\s*:\s?(?P<text>.*)$")

_SHOWN = 3

_NOTES = (
    ("appledouble", "{n} macOS '._*' file(s) skipped"),
    ("no_wav_dir", "{n} session(s) without a sentences/wav folder"),
    ("no_eval", "{n} session(s) without EmoEvaluation files"),
    ("evaluator", "{n} per-evaluator line(s) (C-E1:, A-E2: ...) in EmoEvaluation files skipped"),
    ("stray_eval", "{n} EmoEvaluation line(s) that are not utterance lines skipped"),
    ("bad_name", "{n} EmoEvaluation line(s) whose utterance name is not SesNN[FM]_..._[FM]NNN skipped"),
    ("unknown_code", f"{{n}} utterance(s) with an emotion code outside {list(EMOTION_CODES)} kept "
                     "(emotion4 empty)"),
    ("xxx", "{n} utterance(s) without a majority label (xxx) kept with emotion4 empty"),
    ("bad_vad", "{n} utterance(s) whose [v, a, d] are not three numbers: ratings left empty"),
    ("vad_range", "{n} utterance(s) with a rating outside [1, 5] kept as written"),
    ("dup_same", "{n} repeated identical utterance line(s) merged"),
    ("dup_conflict", "{n} utterance line(s) repeating an utterance with other labels: the first line kept"),
    ("dup_wav", "{n} utterance(s) with more than one wav: the first found used"),
    ("stray_trans", "{n} transcription line(s) not of the form 'utt [start-end]: text' skipped"),
    ("dup_trans", "{n} repeated transcription line(s): the first kept"),
    ("no_text", "{n} utterance(s) without a transcription line: text left empty"),
    ("latin1", "{n} file(s) not UTF-8, read as Latin-1"),
)
"""Tally key -> the note written to ``Corpus.problems`` (``{n}``: the count)."""


@dataclass(frozen=True)
class UtteranceName:
    """What an utterance name says.

    Attributes:
        session: two digits, ``01`` .. ``05``.
        speaker: session + the utterance's own gender letter, e.g. ``01M``.
        gender: ``F`` or ``M`` (the letter before the utterance number).
        dialog: the name without the utterance part, e.g. ``Ses01F_impro01``.
        mode: ``improvised`` or ``scripted``.
    """

    session: str
    speaker: str
    gender: str
    dialog: str
    mode: str


def parse_utterance(name: str) -> UtteranceName | None:
    """Parse an utterance name; None when it is not one.

    Example:
        >>> u = parse_utterance("Ses01F_impro01_M003")
        >>> u.speaker, u.session, u.dialog, u.mode
        ('01M', '01', 'Ses01F_impro01', 'improvised')
        >>> parse_utterance("Ses03M_script01_2_F011").speaker
        '03F'
        >>> parse_utterance("notes") is None
        True
    """
    m = UTTERANCE_RE.match(name)
    if m is None:
        return None
    session, gender = m["session"], m["gender"]
    return UtteranceName(
        session=session,
        speaker=f"{session}{gender}",
        gender=gender,
        dialog=name.rsplit("_", 1)[0],
        mode="improvised" if m["kind"] == "impro" else "scripted",
    )


@dataclass
class _Tally:
    """Counts (and a few examples) of each oddity met while reading."""

    counts: dict[str, int] = field(default_factory=dict)
    shown: dict[str, list[str]] = field(default_factory=dict)

    def add(self, what: str, example: str | None = None) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        if example is not None:
            items = self.shown.setdefault(what, [])
            if len(items) < _SHOWN:
                items.append(example)

    def note(self, what: str, message: str, problems: list[str]) -> None:
        n = self.counts.get(what, 0)
        if n:
            shown = self.shown.get(what)
            problems.append(message.format(n=n) + (f" (e.g. {'; '.join(shown)})" if shown else ""))


def _read_text(path: Path, tally: _Tally) -> list[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        tally.add("latin1", path.name)
        text = data.decode("latin-1")
    return text.splitlines()


def _text_files(folder: Path, base: Path, tally: _Tally) -> list[Path]:
    """``*.txt`` directly in ``folder`` (not its subfolders), AppleDouble files skipped."""
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: natural_key(e.name)):
        if not entry.is_file() or not entry.name.lower().endswith(".txt"):
            continue
        if entry.name.startswith("._"):
            tally.add("appledouble", os.path.relpath(entry.path, base))
            continue
        out.append(Path(entry.path))
    return out


def _find_sessions(root: Path) -> tuple[Path, list[Path]]:
    """The release folder and its ``SessionN`` folders in natural order."""
    for base in (root, root / RELEASE_DIR):
        if base.is_dir():
            sessions = [p for p in base.iterdir() if p.is_dir() and SESSION_RE.match(p.name)]
            if sessions:
                return base, sorted(sessions, key=lambda p: natural_key(p.name))
    raise CorpusError(
        f"no Session1..Session5 folders in {root} or {root / RELEASE_DIR}; the iemocap layout "
        "expects the release as distributed (ROOT/Session1/sentences/wav/..., "
        "ROOT/Session1/dialog/EmoEvaluation/...): pass the IEMOCAP_full_release folder as --corpus"
    )


def _scan_wavs(session: Path, base: Path, tally: _Tally, audio: dict[str, str]) -> None:
    wav_root = session / "sentences" / "wav"
    if not wav_root.is_dir():
        tally.add("no_wav_dir", str(wav_root.relative_to(base)))
        return
    for dirpath, dirnames, filenames in os.walk(wav_root):
        dirnames[:] = [d for d in dirnames if not d.startswith("._")]
        for name in filenames:
            if not name.lower().endswith(".wav"):
                continue
            path = os.path.join(dirpath, name)
            if name.startswith("._"):
                tally.add("appledouble", os.path.relpath(path, base))
                continue
            stem = name[:-4]
            if stem in audio:
                tally.add("dup_wav", stem)
                continue
            audio[stem] = os.path.abspath(path)


def _parse_vad(text: str) -> tuple[float, float, float] | None:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        return None
    try:
        return tuple(float(p) for p in parts)  # type: ignore[return-value]
    except ValueError:
        return None


def _read_evaluation(path: Path, base: Path, tally: _Tally, rows: dict[str, dict]) -> None:
    where = str(path.relative_to(base))
    for lineno, raw in enumerate(_read_text(path, tally), start=1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if _EVALUATOR_LINE.match(line):
            tally.add("evaluator")
            continue
        m = _EVAL_LINE.match(line)
        if m is None:
            tally.add("stray_eval", f"{where}:{lineno} {line[:40]!r}")
            continue
        utt = m["utt"]
        name = parse_utterance(utt)
        if name is None:
            tally.add("bad_name", f"{where}:{lineno} {utt!r}")
            continue
        emo = m["emo"].lower()
        if emo not in EMOTION_CODES:
            tally.add("unknown_code", f"{utt} {m['emo']!r}")
        vad = _parse_vad(m["vad"])
        if vad is None:
            tally.add("bad_vad", f"{where}:{lineno} [{m['vad']}]")
            vad = (np.nan, np.nan, np.nan)
        elif any(not RATING_RANGE[0] <= v <= RATING_RANGE[1] for v in vad):
            tally.add("vad_range", f"{utt} {list(vad)}")
        row = {
            "emotion": emo,
            "emotion4": MERGED.get(emo),
            "emotion4_nomerge": UNMERGED.get(emo),
            **dict(zip(DIMENSIONS, vad)),
            "speaker": name.speaker,
            "gender": name.gender,
            "session": name.session,
            "dialog": name.dialog,
            "mode": name.mode,
        }
        if utt in rows:
            same = all(
                rows[utt][k] == row[k] or (pd.isna(rows[utt][k]) and pd.isna(row[k])) for k in row
            )
            tally.add("dup_same" if same else "dup_conflict", f"{where}:{lineno} {utt}")
            continue
        if emo == NO_MAJORITY:
            tally.add("xxx")
        rows[utt] = row


def _read_transcripts(path: Path, base: Path, tally: _Tally, texts: dict[str, str]) -> None:
    where = str(path.relative_to(base))
    for lineno, raw in enumerate(_read_text(path, tally), start=1):
        line = raw.strip()
        if not line:
            continue
        m = _TRANSCRIPT_LINE.match(line)
        if m is None:
            tally.add("stray_trans", f"{where}:{lineno} {line[:40]!r}")
            continue
        utt = m["utt"]
        if utt in texts:
            tally.add("dup_trans", utt)
            continue
        texts[utt] = m["text"].strip()


@register_layout("iemocap")
def read_iemocap(root: Path, *, labels: Path | None = None) -> Corpus:
    """Read an IEMOCAP release.

    Args:
        root: ``IEMOCAP_full_release`` (the folder holding ``Session1`` .. ``Session5``), or
            its parent.
        labels: not used (the labels live inside the release); must be None.

    Returns:
        The corpus: clips keyed by utterance name, ``group`` = speaker (``01F`` .. ``05M``),
        split ``''``; label columns as in the module docstring. Oddities of the copy are
        counted in ``problems``.

    Raises:
        CorpusError: ``labels`` is given, there is no ``SessionN`` folder, or no EmoEvaluation
            file holds an utterance line.
    """
    root = Path(root)
    if labels is not None:
        raise CorpusError(
            f"the iemocap layout reads its labels from the release itself "
            f"(SessionN/dialog/EmoEvaluation); drop --labels {labels}"
        )
    base, sessions = _find_sessions(root)
    tally = _Tally()
    audio: dict[str, str] = {}
    rows: dict[str, dict] = {}
    texts: dict[str, str] = {}
    for session in sessions:
        _scan_wavs(session, base, tally, audio)
        eval_dir = session / "dialog" / "EmoEvaluation"
        files = _text_files(eval_dir, base, tally)
        if not files:
            tally.add("no_eval", str(eval_dir.relative_to(base)))
        for path in files:
            _read_evaluation(path, base, tally, rows)
        for path in _text_files(session / "dialog" / "transcriptions", base, tally):
            _read_transcripts(path, base, tally, texts)
    if not rows:
        raise CorpusError(
            f"no utterance line found in {base}/Session*/dialog/EmoEvaluation/*.txt; expected "
            "lines like '[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]'"
        )

    ids = sorted(rows, key=natural_key)
    table = pd.DataFrame.from_dict(rows, orient="index").loc[ids]
    table.index = pd.Index(ids, name=INDEX_NAME)
    for col in DIMENSIONS:
        table[col] = table[col].astype(float)
    no_text = [i for i in ids if i not in texts]
    text = pd.Series({i: texts[i] for i in ids if i in texts}, dtype=object)
    table["text"] = text.reindex(table.index)
    for col in ("emotion4", "emotion4_nomerge"):
        table[col] = table[col].astype(object).where(table[col].notna(), np.nan)  # None -> NaN
    for utt in no_text:
        tally.add("no_text", utt)

    problems: list[str] = []
    for what, message in _NOTES:
        tally.note(what, message, problems)

    # Wavs nobody labelled still have a speaker in their name.
    group = {utt: row["speaker"] for utt, row in rows.items()}
    for utt in audio:
        if utt not in group:
            name = parse_utterance(utt)
            group[utt] = name.speaker if name is not None else ""
    return assemble_corpus(
        base,
        "iemocap",
        audio=audio,
        labels=table,
        split=pd.Series("", index=table.index, dtype=object),
        group=pd.Series(group, dtype=object),
        problems=problems,
        audio_where=f"{base}/Session*/sentences/wav",
    )
