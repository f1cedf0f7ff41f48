"""Reader for any corpus described by one CSV table.

::

    file,split,group,label_a,label_b,...
    clips/a.wav,train,spk1,0.3,happy

``file`` (required) is the audio path relative to the corpus root (absolute paths work too);
``split`` (optional) is mapped case-insensitively from train/val/valid/dev/test; the group
(speaker/subject, optional) is the column ``group``, else the first of ``speaker``,
``speaker_id``, ``subject`` (:data:`data.corpora.registry.GROUP_COLUMNS`), or the column named by
``group_column`` (``extract --group-column COL``); it is never a label. ``start``/``end`` (optional) make the row a segment of its file, in
seconds (``12.5``) or ``HH:MM:SS.fff`` (an empty start is 0, an empty end the end of the file).
Every other column is a label: numeric when all its non-empty cells are numbers, else text; a
column named ``text`` (the transcript) is always text. The clip id is the file path without its extension, relative to the root with ``/`` separators, and
for a segment ``@<start>-<end>`` after it (``talks/long@12.5-14.5``, see
:func:`data.corpus.segment_id`). A segment with bad times (negative, start not before end, past
the end of the file, not a time) or overlapping another segment of its file is kept as a failed
clip whose reason names the line; the other rows are extracted.
"""
from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from data.corpora.registry import GROUP_COLUMNS, TEXT_COLUMN, register_layout
from data.corpus import (
    Corpus,
    CorpusError,
    assemble_corpus,
    canonical_columns,
    check_segments,
    drop_repeated_rows,
    examples,
    find_column,
    normalise_splits,
    parse_time,
    read_table,
    require_columns,
    segment_id,
)

logger = logging.getLogger(__name__)

RESERVED = ("file", "split", "group", "start", "end")


def clip_id_for(file: str, root: Path) -> str:
    """Clip id of a ``file`` cell: the path without extension, relative to ``root``, ``/``-separated.

    Example:
        >>> clip_id_for("clips\\\\a.b.wav", Path("/data"))
        'clips/a.b'
    """
    text = file.replace("\\", "/")
    path = PurePosixPath(text)
    if path.is_absolute():
        try:
            path = PurePosixPath(Path(text).relative_to(root).as_posix())
        except ValueError:
            pass
    return str(path.with_suffix("")) if path.suffix else str(path)


def _numeric_or_text(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    if series.notna().any() and (values.notna() == series.notna()).all():
        return values.astype(float)
    return series


@register_layout("csv")
def read_csv_corpus(root: Path, *, labels: Path | None = None,
                    group_column: str | None = None) -> Corpus:
    """Read a corpus described by one CSV.

    Args:
        root: the corpus folder; ``file`` paths are relative to it.
        labels: the CSV (default ``root/labels.csv``).
        group_column: the column naming each clip's group (speaker/subject); default the first
            of ``group`` and :data:`GROUP_COLUMNS` present. It is not a label.

    Returns:
        The corpus. Rows whose file does not exist are kept (extraction reports them as failed)
        and noted in ``problems``; rows repeating the same file with the same values are merged
        (noted).

    Raises:
        CorpusError: no such CSV, no ``file`` column, an unknown split value, no column
            ``group_column``, or rows for the same clip with different values (names the lines).
    """
    root = Path(root)
    path = Path(labels) if labels is not None else root / "labels.csv"
    table = read_table(path, what="corpus table")
    table = canonical_columns(table, RESERVED)
    table = _group_column(table, group_column, path)
    require_columns(
        table, ["file"], path=path, hint="the csv layout needs a 'file' column with audio paths relative to the root"
    )
    problems: list[str] = []
    no_file = table["file"].isna().to_numpy()
    if no_file.any():
        problems.append(
            f"{path.name}: {int(no_file.sum())} row(s) with an empty 'file' cell "
            f"(lines {examples(list(np.flatnonzero(no_file) + 2))}); skipped"
        )
    lines = pd.Series(np.arange(len(table)) + 2)[~no_file]
    table = table[~no_file]

    if "split" in table.columns:
        split = normalise_splits(table["split"])
        bad = split.isna().to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise CorpusError(
                f"{path} line {lines.iloc[first]}: split {table['split'].iloc[first]!r} is not one of "
                "train/val/valid/dev/test; fix the value or leave the cell empty"
            )
        table = table.assign(split=split.to_numpy())
    else:
        table = table.assign(split="")
    if "group" not in table.columns:
        table = table.assign(group="")

    ids, spans, bad_times = _clip_ids(table, root, lines, path)
    table.index = pd.Index(ids, name="clip_id")
    lines.index = table.index
    table, repeated = drop_repeated_rows(table, lines.to_numpy(), path=path)
    if repeated:
        problems.append(
            f"{path.name}: {len(repeated)} file(s) listed on more than one identical row "
            f"({examples(repeated)}); kept one row each"
        )

    # A listed file that does not exist stays in the corpus: extraction then reports it as a
    # failed clip naming the path, next to every other unreadable file.
    audio: dict[str, str] = {}
    missing: list[str] = []
    for clip_id, file in table["file"].items():
        candidate = Path(file.replace("\\", "/"))
        full = candidate if candidate.is_absolute() else root / candidate
        audio[clip_id] = str(full.absolute())
        if not full.is_file():
            missing.append(file)
    if missing:
        problems.append(
            f"{path.name}: {len(missing)} listed file(s) do not exist under {root} "
            f"({examples(missing)}); kept, extraction will report them as failed"
        )

    errors: dict[str, str] = {}
    first_line = lines[~lines.index.duplicated(keep="first")]
    if spans:
        segments = pd.DataFrame(
            {"path": [audio[c] for c in spans], "start": [spans[c][0] for c in spans],
             "end": [np.nan if spans[c][1] is None else spans[c][1] for c in spans],
             "where": [f"{path.name} line {first_line.loc[c]}" for c in spans]},
            index=pd.Index(list(spans), dtype=object)).astype({"start": float, "end": float})
        good = [c for c in spans if c not in bad_times]
        errors = check_segments(segments.loc[good]) if good else {}
    errors |= bad_times
    if errors:
        problems.append(f"{path.name}: {len(errors)} segment row(s) cannot be extracted "
                        f"({examples(sorted(errors))}); each is recorded as a failed clip")

    label_cols = [c for c in table.columns if c not in RESERVED]
    label_table = pd.DataFrame(
        {c: table[c] if c == TEXT_COLUMN else _numeric_or_text(table[c]) for c in label_cols},
        index=table.index,
    )
    return assemble_corpus(
        root,
        "csv",
        audio=audio,
        labels=label_table,
        split=table["split"].fillna(""),
        group=table["group"].fillna(""),
        problems=problems,
        audio_where=f"{root} (as listed in {path.name})",
        audio_listed=True,
        spans=spans,
        errors=errors,
    )


def _group_column(table: pd.DataFrame, name: str | None, path: Path) -> pd.DataFrame:
    """The table with its group column renamed ``group`` (so it is no label).

    Raises:
        CorpusError: ``name`` is given and is not a column (lists the columns).
    """
    if name is not None:
        hit = find_column(table, [name])
        if hit is None or hit in ("file", "split", "start", "end"):
            raise CorpusError(f"{path}: --group-column {name!r} is not a column of the table; "
                              f"columns: {list(table.columns)}")
    else:
        # ``group`` (this layout's own name for it) first, then the usual names
        hit = find_column(table, ["group", *(c for c in GROUP_COLUMNS if c != "group")])
        if hit is None:
            return table
    if hit == "group":
        return table
    logger.info("%s: column %r is the group (speaker) of each clip, not a label", path.name, hit)
    rest = table.drop(columns=["group"]) if "group" in table.columns else table
    return rest.rename(columns={hit: "group"})


def _clip_ids(table: pd.DataFrame, root: Path, lines: pd.Series, path: Path
              ) -> tuple[list[str], dict[str, tuple[float | None, float | None]], dict[str, str]]:
    """Clip id of every row; the spans of segment rows; rows whose times do not parse.

    A row whose ``start``/``end`` text is not a time keeps that text in its id and fails with
    a reason naming the line.
    """
    has_span = "start" in table.columns or "end" in table.columns
    ids: list[str] = []
    spans: dict[str, tuple[float | None, float | None]] = {}
    bad: dict[str, str] = {}
    starts = table["start"] if "start" in table.columns else pd.Series(None, index=table.index)
    ends = table["end"] if "end" in table.columns else pd.Series(None, index=table.index)
    for file, start_cell, end_cell, line in zip(table["file"], starts, ends, lines):
        base = clip_id_for(file, root)
        if not has_span:
            ids.append(base)
            continue
        try:
            start, end = parse_time(start_cell), parse_time(end_cell)
        except ValueError as exc:
            raw = [str(c).strip() if isinstance(c, str) else "" for c in (start_cell, end_cell)]
            cid = f"{base}@{raw[0] or '0'}-{raw[1] or 'end'}"
            bad[cid] = f"{path.name} line {line}: {exc}"
            spans[cid] = (None, None)
            ids.append(cid)
            continue
        cid = segment_id(base, start, end)
        if cid != base:
            spans[cid] = (start, end)
        ids.append(cid)
    return ids, spans, bad
