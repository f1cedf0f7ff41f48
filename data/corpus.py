"""The corpus every reader produces: a clip table, a label table and a list of problems.

A :class:`Corpus` is plain data. ``clips`` says where each clip's audio is, its split and its
group (speaker/subject); ``labels`` holds one row per clip that has label rows, one column per
label. Readers (``data.corpora``) fill it; they put recoverable oddities of a release (label rows
without audio, audio without labels, out-of-range values) into ``problems`` and raise
:class:`CorpusError` for anything that makes the tables untrustworthy.

A clip may be a segment of its file: ``clips`` then has ``start``/``end`` columns (seconds;
NaN start = 0, NaN end = the end of the file). A segment's clip id is its file's id followed by
``@<start>-<end>`` in seconds (:func:`segment_id`, e.g. ``long@12.5-14.5``); its content hash
covers file, start and end (``data.audio.segment_hash``). A clip the reader found unusable (a
segment out of range, overlapping another, with unreadable times) stays in ``clips`` with the
reason in an ``error`` column, naming the table row: extraction records it as a failed clip and
completes the rest.

This module also holds the table helpers the readers share: reading a CSV with every column as
text, finding columns by name, turning columns into numbers with errors that name the line.

One concept, at length: the clip and label tables every reader hands on, with the checks
and segment rules that make them trustworthy; the readers themselves are in ``data.corpora``.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SPLITS = ("Train", "Val", "Test")
"""Canonical split names; ``''`` marks a clip whose split is unknown."""

CLIP_COLUMNS = ("path", "split", "group")
SPAN_COLUMNS = ("start", "end")
"""Optional clip columns of segments (seconds, NaN where absent)."""
ERROR_COLUMN = "error"
"""Optional clip column: why the reader found the clip unusable ('' when it is fine)."""
INDEX_NAME = "clip_id"

_SPLIT_ALIASES = {
    "train": "Train",
    "training": "Train",
    "val": "Val",
    "valid": "Val",
    "validation": "Val",
    "dev": "Val",
    "devel": "Val",
    "development": "Val",
    "test": "Test",
    "testing": "Test",
}

# Empty cells and the usual spellings of "missing"; anything else is a value.
NA_VALUES = ["", "nan", "NaN", "NAN", "NULL", "null", "N/A", "n/a", "#N/A"]

_EXAMPLES = 5


class CorpusError(ValueError):
    """A corpus cannot be read into trustworthy tables; the message names the file and the fix."""


def normalise_split(value: object) -> str | None:
    """Map a split name to ``Train``/``Val``/``Test``.

    Args:
        value: a split as written in a table (any case; ``dev``/``valid`` mean ``Val``).

    Returns:
        The canonical name, ``''`` for a missing value, or None for a value that is not a split.

    Example:
        >>> normalise_split("devel"), normalise_split(" TEST "), normalise_split(float("nan"))
        ('Val', 'Test', '')
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = str(value).strip()
    if not text:
        return ""
    return _SPLIT_ALIASES.get(text.lower())


def strip_id(value: object) -> str:
    """Clip id as text without the brackets A-VB writes around it (``[10119]`` -> ``10119``).

    Example:
        >>> strip_id(" [10119] "), strip_id("10119")
        ('10119', '10119')
    """
    text = str(value).strip()
    if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
        text = text[1:-1].strip()
    return text


def strip_ids(values: pd.Series) -> pd.Series:
    """Vectorised :func:`strip_id` over a text column (missing cells stay missing)."""
    text = values.astype("str").where(values.notna()).str.strip()
    bracketed = (text.str.startswith("[") & text.str.endswith("]")).fillna(False).astype(bool)
    return text.where(~bracketed, text.str.slice(1, -1).str.strip())


def normalise_splits(values: pd.Series) -> pd.Series:
    """:func:`normalise_split` over a column; unknown values become NaN, missing ones ``''``."""
    mapping = {v: normalise_split(v) for v in values.dropna().unique()}
    return values.map(mapping).astype(object).where(values.notna(), "")


def natural_key(text: str) -> tuple:
    """Sort key that orders ``'9'`` before ``'10'`` and ``'a2'`` before ``'a10'``."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", text)
        if part
    )


def examples(items: Iterable[object], n: int = _EXAMPLES) -> str:
    """A short comma-separated sample of ``items`` for messages (``a, b, c, ... (12 in all)``)."""
    items = list(items)
    shown = ", ".join(str(i) for i in items[:n])
    return shown if len(items) <= n else f"{shown}, ... ({len(items)} in all)"


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).casefold()


def read_table(path: Path, *, what: str, numeric: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV: stripped header names, text cells, numbers parsed where asked.

    Args:
        path: the CSV file.
        what: what the table is, for messages (e.g. ``"A-VB label table"``).
        numeric: columns (matched like :func:`find_column`) to parse as numbers while reading,
            which is much faster than converting text afterwards. A column with a cell that is
            not a number stays text; :func:`to_numeric` then names the cell.

    Returns:
        The table; missing cells are NaN, other cells ``str`` (or float in ``numeric`` columns).

    Raises:
        CorpusError: the file is missing, empty or not parseable as CSV.
    """
    if not path.is_file():
        raise CorpusError(f"{what} not found: {path}; check the corpus root and the layout")
    options = dict(keep_default_na=False, na_values=NA_VALUES, skipinitialspace=True, encoding="utf-8-sig")
    try:
        header = pd.read_csv(path, nrows=0, **options).columns
        wanted = {_norm_name(n) for n in numeric}
        text = {c: str for c in header if _norm_name(str(c)) not in wanted}
        table = pd.read_csv(path, dtype=text, **options)
    except pd.errors.EmptyDataError as exc:
        raise CorpusError(f"{what} {path} is empty; it needs a header row and data rows") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise CorpusError(
            f"cannot read {what} {path} ({exc}); save it as a UTF-8 comma-separated CSV"
        ) from exc
    table.columns = [str(c).strip() for c in table.columns]
    for col in table.columns:
        if pd.api.types.is_numeric_dtype(table[col]):
            continue
        stripped = table[col].astype("str").where(table[col].notna()).str.strip()
        table[col] = stripped.mask(stripped.eq(""))
    return table


def find_column(table: pd.DataFrame, names: Sequence[str]) -> str | None:
    """First column of ``table`` whose name matches one of ``names``, ignoring case, spaces and
    underscores; None when none matches."""

    present = {_norm_name(c): c for c in table.columns}
    for name in names:
        hit = present.get(_norm_name(name))
        if hit is not None:
            return hit
    return None


def canonical_columns(table: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """Rename columns that match one of ``names`` up to case/spaces/underscores to that name."""
    mapping = {}
    for name in names:
        hit = find_column(table, [name])
        if hit is not None and hit != name and name not in table.columns:
            mapping[hit] = name
    return table.rename(columns=mapping) if mapping else table


def require_columns(table: pd.DataFrame, required: Sequence[str], *, path: Path, hint: str = "") -> None:
    """Raise CorpusError naming the missing columns, the file and the columns found.

    Raises:
        CorpusError: a required column is absent.
    """
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise CorpusError(
            f"{path}: missing required column(s) {missing}; columns found: {list(table.columns)}"
            + (f". {hint}" if hint else "")
        )


def to_numeric(series: pd.Series, *, path: Path, column: str) -> pd.Series:
    """Convert a text column to float; empty cells become NaN.

    ``series`` must be in file order (before re-indexing) so the reported line is right.

    Raises:
        CorpusError: a non-empty cell is not a number (names the file, line and value).
    """
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64")
    values = pd.to_numeric(series, errors="coerce").astype(float)
    bad = (series.notna() & values.isna()).to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise CorpusError(
            f"{path} line {first + 2}: column {column!r} holds {series.iloc[first]!r}, "
            "expected a number "
            f"({int(bad.sum())} such cells); fix the value or leave the cell empty"
        )
    return values


_TIME = re.compile(r"^(?:(?:(\d+):)?(\d{1,2}):)?(\d+(?:\.\d*)?|\.\d+)$")


def parse_time(value: object) -> float | None:
    """A segment time as seconds: a number, ``SS.fff``, ``MM:SS.fff`` or ``HH:MM:SS.fff``.

    Args:
        value: a table cell (text, number, ``pandas.Timedelta``; empty/NaN/NaT means none).

    Returns:
        Seconds, or None for a missing value. A leading ``-`` gives a negative time (rejected
        later as out of range, naming the row).

    Raises:
        ValueError: the text is not a time (names the value and the accepted forms).

    Example:
        >>> parse_time("01:02:03.5"), parse_time("2:03"), parse_time(" 12.25 "), parse_time("")
        (3723.5, 123.0, 12.25, None)
    """
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timedelta):
        return value.value / 1e9
    if isinstance(value, (int, float, np.integer, np.floating)):
        return None if np.isnan(value) else float(value)
    text = str(value).strip()
    if not text or text in NA_VALUES:
        return None
    sign = -1.0 if text.startswith("-") else 1.0
    match = _TIME.match(text.lstrip("-").strip())
    if match is None:
        raise ValueError(f"{text!r} is not a time; write seconds (12.5) or HH:MM:SS.fff "
                         "(00:00:12.500)")
    hours, minutes, secs = match.groups()
    if minutes is not None and (float(secs) >= 60 or (hours is not None and int(minutes) >= 60)):
        raise ValueError(f"{text!r} is not a time: minutes and seconds after a ':' must be below "
                         "60; write HH:MM:SS.fff (00:01:15.000) or plain seconds (75)")
    return sign * (int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(secs))


def segment_id(base: str, start: float | None, end: float | None) -> str:
    """Clip id of a segment: ``<base>@<start>-<end>`` (seconds, shortest exact text).

    A whole file (no end, start 0 or none) keeps ``base``; an open end is written ``end``.

    Example:
        >>> segment_id("talks/long", 12.5, 14.5), segment_id("a", 3, None), segment_id("a", None, None)
        ('talks/long@12.5-14.5', 'a@3-end', 'a')
    """
    from data.audio import format_seconds, is_whole_file

    if is_whole_file(start, end):
        return base
    first = format_seconds(start or 0.0)
    return f"{base}@{first}-{'end' if end is None else format_seconds(end)}"


def check_segments(segments: pd.DataFrame) -> dict[str, str]:
    """Per-clip errors of segments: bad times, overlaps with another segment, past the file end.

    Args:
        segments: one row per segment clip, index clip id, columns ``path``, ``start``, ``end``
            (seconds, NaN for an open end) and ``where`` (the table row, for messages).

    Returns:
        ``{clip_id: reason}`` naming the row; rows not listed are fine. Of two overlapping
        segments of one file the one starting later (then the later row) fails, naming both:
        overlapping segments share audio, which would count twice and can leak between splits.
        Whole-file clips never count as overlapping their segments. The file's header is read
        once per file to check the end; a missing or unreadable file is left for extraction to
        report.
    """
    from data.audio import AudioError, audio_info, describe_segment, span_frames

    errors: dict[str, str] = {}
    for path, rows in segments.groupby("path", sort=False):
        try:
            frames, rate, _ = audio_info(path)
        except AudioError:
            frames = rate = None
        order = rows.assign(_s=rows["start"].fillna(0.0),
                            _e=rows["end"].fillna(np.inf)).sort_values(["_s", "_e"], kind="stable")
        reach, reach_where, reach_span = -np.inf, "", ""
        for cid, row in order.iterrows():
            start, end = row["start"], None if pd.isna(row["end"]) else float(row["end"])
            try:
                # times alone first (nanosecond frames), then against the file's header
                span_frames(path, start, end, rate=1_000_000_000, frames=2**62)
                if rate:
                    span_frames(path, start, end, rate=rate, frames=frames)
            except AudioError as exc:
                errors[str(cid)] = f"{row['where']}: {exc}"
                continue
            span = describe_segment(start, end)
            if row["_s"] < reach:
                errors[str(cid)] = (
                    f"{row['where']}: {path}: {span} overlaps the {reach_span} of "
                    f"{reach_where}; overlapping segments would count the same audio twice: cut "
                    "them apart or drop one row")
                continue
            if row["_e"] > reach:
                reach, reach_where, reach_span = row["_e"], row["where"], span
    return errors


def _comparable(series: pd.Series) -> pd.Series:
    """Cells as compared between duplicate rows: a number-like text cell as its number."""
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64")
    numbers = pd.to_numeric(series, errors="coerce")
    return series.where(numbers.isna(), numbers).astype(object)


def drop_repeated_rows(table: pd.DataFrame, lines: Sequence[int], *, path: Path
                       ) -> tuple[pd.DataFrame, list[str]]:
    """Keep the first of rows that repeat one index value with the same values; refuse rows
    that repeat it with different values.

    Linear in the number of rows (one hash of every row, one of every distinct row). Cells
    are compared as :func:`read_table` would make them numbers: a number-like cell compares
    as its number, so ``0.4115`` and ``0.41150`` are the same value; missing cells are equal.

    Args:
        table: rows indexed by clip id, in file order.
        lines: the file line of each row (same order), for messages.
        path: the table, for messages.

    Returns:
        ``(table with one row per id, the ids that were repeated)``.

    Raises:
        CorpusError: one id has rows with different values (names the id and its lines).
    """
    repeated = table.index.duplicated(keep=False)
    if not repeated.any():
        return table, []
    keyed = pd.DataFrame({i: _comparable(table[c]).to_numpy() for i, c in enumerate(table.columns)})
    keyed[-1] = table.index.to_numpy()
    distinct = ~keyed.duplicated(keep="first").to_numpy()
    clash = table.index[distinct].duplicated(keep=False)
    if clash.any():
        clip_id = table.index[distinct][clash][0]
        where = [int(n) for n, hit in zip(lines, table.index == clip_id) if hit]
        raise CorpusError(
            f"{path}: clip id {clip_id!r} appears on lines {where} with different values; "
            "keep one row per clip"
        )
    ids = list(pd.unique(table.index[repeated]))
    return table[~table.index.duplicated(keep="first")], ids


def dedupe_ids(table: pd.DataFrame, ids: pd.Series, *, path: Path, problems: list[str]) -> pd.DataFrame:
    """Index ``table`` by ``ids``; drop identical duplicate rows, refuse conflicting ones.

    Args:
        table: rows read from ``path`` (positional index as read).
        ids: clip id of each row.
        path: the table, for messages.
        problems: list to append a note about removed duplicates to.

    Returns:
        ``table`` indexed by clip id (index name ``clip_id``), one row per id.

    Raises:
        CorpusError: one id has rows with different values (names the id and the lines); see
            :func:`drop_repeated_rows` for how values are compared.
    """
    table = table.copy()
    table.index = pd.Index(ids.to_numpy(), name=INDEX_NAME)
    table, repeated = drop_repeated_rows(table, np.arange(len(table)) + 2, path=path)
    if repeated:
        problems.append(
            f"{path.name}: {len(repeated)} clip id(s) appear on more than one identical row "
            f"({examples(repeated)}); kept one row each"
        )
    return table


@dataclass(frozen=True, eq=False)
class Corpus:
    """Clips, labels and the problems a reader found.

    Attributes:
        root: the corpus folder.
        layout: the reader that produced it (``avb``, ``exvo``, ``csv``).
        clips: index ``clip_id`` (str); columns ``path`` (absolute path), ``split``
            (``Train``/``Val``/``Test`` or ``''``) and ``group`` (speaker/subject or ``''``);
            for corpora with segments also ``start``/``end`` (seconds, NaN = file start/end);
            where the reader refused clips, ``error`` (the reason naming the row, or ``''``).
        labels: index ``clip_id``, only clips that have label rows; numeric label columns are
            float, class columns str; missing labels (e.g. Test rows) are NaN.
        problems: human-readable warnings about the release (not fatal).
        meta: what the corpus is, recorded with the workdir (e.g. an audformat database's name
            and version); JSON-serialisable.
    """

    root: Path
    layout: str
    clips: pd.DataFrame
    labels: pd.DataFrame
    problems: tuple[str, ...] = field(default_factory=tuple)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in CLIP_COLUMNS if c not in self.clips.columns]
        if missing:
            raise CorpusError(f"Corpus.clips lacks column(s) {missing}; has {list(self.clips.columns)}")
        if self.clips.index.name != INDEX_NAME or self.labels.index.name != INDEX_NAME:
            raise CorpusError(f"Corpus tables must be indexed by {INDEX_NAME!r}")
        if not self.clips.index.is_unique:
            raise CorpusError("Corpus.clips has duplicate clip ids")

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def ids(self) -> list[str]:
        """All clip ids in table order."""
        return list(self.clips.index)

    def spans(self) -> dict[str, tuple[float | None, float | None]]:
        """``{clip_id: (start, end)}`` in seconds for the clips that are segments (None = open)."""
        if "start" not in self.clips.columns:
            return {}
        out = {}
        for cid, start, end in zip(self.clips.index, self.clips["start"], self.clips["end"]):
            s = None if pd.isna(start) else float(start)
            e = None if pd.isna(end) else float(end)
            if e is not None or s:
                out[str(cid)] = (s, e)
        return out

    def clip_errors(self) -> dict[str, str]:
        """``{clip_id: reason}`` of the clips the reader found unusable (extraction fails them)."""
        if ERROR_COLUMN not in self.clips.columns:
            return {}
        col = self.clips[ERROR_COLUMN].fillna("").astype(str)
        return {str(c): r for c, r in col.items() if r}

    def sources(self, ids: Sequence[str]) -> pd.DataFrame:
        """Where the audio of ``ids`` is: columns ``file``, ``start``, ``end`` (seconds).

        ``start`` is 0 for whole files, ``end`` NaN where the clip runs to the end of its file;
        ids not in the corpus get empty cells. Exports add these three columns.
        """
        index = pd.Index([str(i) for i in ids], name=INDEX_NAME)
        known = self.clips.reindex(index)
        start = known["start"] if "start" in known.columns else pd.Series(np.nan, index=index)
        end = known["end"] if "end" in known.columns else pd.Series(np.nan, index=index)
        return pd.DataFrame({"file": known["path"].to_numpy(dtype=object),
                             "start": start.fillna(0.0).where(known["path"].notna()).to_numpy(float),
                             "end": end.to_numpy(float)}, index=index)

    def split_ids(self, split: str) -> list[str]:
        """Ids of the clips in one split.

        Args:
            split: ``Train``, ``Val`` or ``Test`` (aliases like ``dev`` accepted), or ``''`` for
                clips whose split is unknown.

        Returns:
            Clip ids in table order.

        Raises:
            ValueError: ``split`` is not a split name.
        """
        canon = normalise_split(split)
        if canon is None:
            raise ValueError(f"unknown split {split!r}; use one of {list(SPLITS)} or ''")
        return list(self.clips.index[self.clips["split"].to_numpy() == canon])

    def subset(self, ids: Iterable[str]) -> Corpus:
        """A corpus holding only ``ids`` (in that order), with their labels.

        Raises:
            KeyError: an id is not in the corpus (names up to five of them).
        """
        ids = [str(i) for i in ids]
        unknown = [i for i in ids if i not in self.clips.index]
        if unknown:
            raise KeyError(f"{len(unknown)} id(s) not in the corpus at {self.root}: {examples(unknown)}")
        keep = [i for i in ids if i in self.labels.index]
        return replace(self, clips=self.clips.loc[ids], labels=self.labels.loc[keep])

    def summary(self) -> dict[str, int]:
        """Clip counts per split (``''`` shown as ``unknown``) and of labelled clips."""
        counts = self.clips["split"].replace("", "unknown").value_counts()
        out = {name: int(counts.get(name, 0)) for name in (*SPLITS, "unknown")}
        out["labelled"] = len(self.labels)
        out["total"] = len(self.clips)
        return out


def scan_audio(folder: Path, *, suffixes: Sequence[str], problems: list[str]) -> dict[str, str]:
    """Audio files directly in ``folder`` by clip id (file name without extension).

    Args:
        folder: the audio folder.
        suffixes: accepted extensions, lower case with dot (``(".wav",)``); case-insensitive.
        problems: list to append a note to when two files share an id.

    Returns:
        ``{clip_id: absolute path}``.
    """
    found: dict[str, str] = {}
    clashes: list[str] = []
    base = os.path.abspath(folder)
    with os.scandir(base) as entries:
        for entry in entries:
            name = entry.name
            stem, dot, ext = name.rpartition(".")
            if not dot or f".{ext.lower()}" not in suffixes or not entry.is_file():
                continue
            if stem in found:
                clashes.append(stem)
                continue
            found[stem] = os.path.join(base, name)
    if clashes:
        problems.append(
            f"{folder}: {len(clashes)} clip id(s) have more than one audio file "
            f"({examples(sorted(clashes, key=natural_key))}); used the first found"
        )
    return found


def drop_infinite_labels(labels: pd.DataFrame, *, problems: list[str]) -> pd.DataFrame:
    """The rule for infinite label values: ``inf``/``-inf`` is not a label; the cell is treated
    as missing (left out of training and scoring, counted with the missing labels), and a note
    naming the column, the count and some clips is appended to ``problems``.

    Returns:
        ``labels`` with infinite numeric cells set to NaN (a copy when any was found).
    """
    out = labels
    for col in labels.columns:
        if not pd.api.types.is_float_dtype(labels[col]):
            continue
        bad = np.isinf(labels[col].to_numpy())
        if bad.any():
            if out is labels:
                out = labels.copy()
            out[col] = labels[col].mask(bad)
            problems.append(
                f"label column {col!r}: {int(bad.sum())} infinite value(s) "
                f"({examples(list(labels.index[bad]))}); an infinite label is not a value: "
                "treated as a missing label (left out of training and scoring)"
            )
    return out


def assemble_corpus(
    root: Path,
    layout: str,
    *,
    audio: dict[str, str],
    labels: pd.DataFrame,
    split: pd.Series,
    group: pd.Series,
    problems: list[str],
    audio_where: str,
    audio_listed: bool = False,
    spans: dict[str, tuple[float | None, float | None]] | None = None,
    errors: dict[str, str] | None = None,
    meta: dict | None = None,
) -> Corpus:
    """Join audio files and label rows into a :class:`Corpus`, noting what does not match.

    Args:
        root: the corpus folder.
        layout: the reader's name.
        audio: ``{clip_id: absolute path}`` of the audio files found.
        labels: label rows indexed by clip id (may hold ids without audio).
        split: canonical split per clip id (``''`` unknown).
        group: speaker/subject per clip id.
        problems: notes gathered so far; the notes made here are appended.
        audio_where: where audio was looked for, for messages.
        audio_listed: True when ``audio`` came from the label table itself (csv layout), so no
            clip can lack a label row.
        spans: ``{clip_id: (start, end)}`` seconds of the clips that are segments.
        errors: ``{clip_id: reason}`` of clips the reader found unusable (kept, failed later).
        meta: what the corpus is (:attr:`Corpus.meta`).

    Returns:
        The corpus, clips in natural id order.

    Raises:
        CorpusError: no clip has an audio file.
    """
    ids = list(audio)
    ids.sort(key=int if all(i.isdigit() for i in ids) else natural_key)
    if not ids:
        raise CorpusError(
            f"no audio files found in {audio_where}; check the corpus root and the layout"
        )
    labelled = set(labels.index)
    no_audio = [i for i in labels.index if i not in audio]
    if no_audio:
        problems.append(
            f"{len(no_audio)} label row(s) have no audio file in {audio_where} "
            f"({examples(sorted(no_audio, key=natural_key))}); they are left out"
        )
    if not audio_listed:
        unlabelled = [i for i in ids if i not in labelled]
        if unlabelled:
            problems.append(
                f"{len(unlabelled)} audio file(s) have no label row "
                f"({examples(unlabelled)}); kept with split ''"
            )
    index = pd.Index(ids, name=INDEX_NAME)
    clips = pd.DataFrame(
        {
            "path": [audio[i] for i in ids],
            "split": split.reindex(index).fillna("").astype(str).to_numpy(),
            "group": group.reindex(index).fillna("").astype(str).to_numpy(),
        },
        index=index,
    )
    if spans:
        clips["start"] = [np.nan if spans.get(i, (None,))[0] is None else spans[i][0] for i in ids]
        clips["end"] = [np.nan if spans.get(i, (None, None))[1] is None else spans[i][1] for i in ids]
    if errors:
        clips[ERROR_COLUMN] = [errors.get(i, "") for i in ids]
    keep = [i for i in ids if i in labelled]
    table = labels.loc[keep]
    table = drop_infinite_labels(table, problems=problems)
    table.index = pd.Index(keep, name=INDEX_NAME)
    for note in problems:
        logger.info("%s corpus at %s: %s", layout, root, note)
    return Corpus(root=root, layout=layout, clips=clips, labels=table, problems=tuple(problems),
                  meta=dict(meta or {}))
