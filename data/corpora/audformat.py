"""Reader for audformat databases: a folder with ``db.yaml`` and its tables.

Read with the ``audformat`` package (``pip install audformat``, or the ``[audformat]`` extra).

- Labels come from the database's filewise and segmented tables (misc tables are not clips):
  ``table`` names the tables to read (comma-separated; default every filewise and segmented
  table), ``column`` the label columns (comma-separated; default every column of those tables).
  Rows of several tables for the same clip are joined; two tables giving one clip different
  values in the same column is refused, naming both.
- A filewise row is the whole file; a segmented row ``(file, start, end)`` is a segment (an
  ``NaT`` end runs to the end of the file). Clip ids follow the csv layout: the file path
  relative to the database root without its extension, plus ``@<start>-<end>`` for a segment.
- Splits come from the database's own split definitions: a table's ``split_id`` names a split
  whose type ``train``/``dev``/``test`` gives ``Train``/``Val``/``Test`` (a split of type
  ``other`` is matched by its name, e.g. ``valid``, else left unknown).
- The group (speaker) is a column named ``speaker`` (or whose scheme is ``speaker``) in any
  filewise or segmented table of the database.
- :attr:`Corpus.meta` records the database's name, source, version (``meta: version`` in
  ``db.yaml``, or the version ``audb`` wrote there when it loaded the database) and the blake2b
  hash of ``db.yaml``; the workdir keeps it in ``corpus.json``.

Segments with bad times, past the end of their file or overlapping another segment of that file
are kept as failed clips whose reason names the table and the row.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from data.audio import format_seconds
from data.corpora.registry import register_layout
from data.corpus import (
    Corpus,
    CorpusError,
    assemble_corpus,
    check_segments,
    examples,
    normalise_split,
    segment_id,
)
from data.corpora.csv import clip_id_for

logger = logging.getLogger(__name__)

HEADER = "db.yaml"
INSTALL = "pip install audformat (or pip install -e '.[audformat]')"
_SPLIT_TYPES = {"train": "Train", "dev": "Val", "test": "Test"}


def _audformat():
    try:
        import audformat
    except ImportError:
        raise CorpusError(f"the audformat layout needs the audformat package: {INSTALL}") from None
    return audformat


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    return names or None


def database_split(db, table_name: str) -> str:
    """Canonical split of a table from the database's split definitions ('' when none)."""
    split_id = db[table_name].split_id
    if not split_id:
        return ""
    split = db.splits[split_id] if split_id in db.splits else None
    kind = getattr(split, "type", None)
    if kind in _SPLIT_TYPES:
        return _SPLIT_TYPES[kind]
    return normalise_split(split_id) or ""


def _clip_frame(db, name: str, root: Path, columns: list[str] | None) -> pd.DataFrame:
    """One table as rows by clip id: label columns, ``_path``, ``_start``, ``_end``, ``_where``."""
    table = db[name]
    df = table.get()
    keep = [c for c in df.columns if columns is None or c in columns]
    df = df[keep]
    index = df.index
    files = index.get_level_values("file").astype(str)
    if table.is_segmented:
        starts = index.get_level_values("start")
        ends = index.get_level_values("end")
    else:
        starts = pd.TimedeltaIndex([pd.NaT] * len(df))
        ends = starts
    ids, paths, s_col, e_col, where = [], [], [], [], []
    for file, start, end in zip(files, starts, ends):
        s = None if pd.isna(start) else start.value / 1e9
        e = None if pd.isna(end) else end.value / 1e9
        base = clip_id_for(file, root)
        cid = segment_id(base, s, e)
        full = Path(file) if Path(file).is_absolute() else root / file
        ids.append(cid)
        paths.append(str(full.absolute()))
        s_col.append(np.nan if s is None else s)
        e_col.append(np.nan if e is None else e)
        if table.is_segmented:
            shown = [format_seconds(s or 0.0) + " s", "NaT" if e is None else format_seconds(e) + " s"]
            where.append(f"table {name!r} row ({file}, {shown[0]}, {shown[1]})")
        else:
            where.append(f"table {name!r} row {file}")
    out = pd.DataFrame({c: _plain(df[c]) for c in keep}, index=pd.Index(ids, name="clip_id"))
    out["_path"], out["_start"], out["_end"] = paths, s_col, e_col
    out["_where"], out["_table"] = where, name
    out["_split"] = database_split(db, name) or np.nan
    return out


def _plain(values: pd.Series) -> np.ndarray:
    """A label column as float (numbers, booleans, durations in seconds) or text."""
    if pd.api.types.is_timedelta64_dtype(values):
        return (values.dt.total_seconds()).to_numpy(float)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values.astype("float64").to_numpy()
    text = values.astype(object).where(values.notna(), np.nan)
    return text.map(lambda v: v if isinstance(v, float) else str(v)).to_numpy(object)


def _speaker_column(db, table_name: str) -> str | None:
    for col_name, col in db[table_name].columns.items():
        if col_name.lower() == "speaker" or (col.scheme_id or "").lower() == "speaker":
            return col_name
    return None


@register_layout("audformat")
def read_audformat_corpus(root: Path, *, labels: Path | None = None, table: str | None = None,
                          column: str | None = None) -> Corpus:
    """Read an audformat database folder.

    Args:
        root: the database folder (holds ``db.yaml``); relative file paths start here.
        labels: not used by this layout (the tables are in ``db.yaml``); must be None.
        table: comma-separated names of the tables holding the labels (default: every
            filewise and segmented table).
        column: comma-separated label columns (default: every column of the chosen tables).

    Returns:
        The corpus; ``meta["database"]`` names the database and its version.

    Raises:
        CorpusError: audformat missing (says what to install), no ``db.yaml``, the database
            cannot be loaded, a named table or column does not exist (lists those that do),
            or two tables disagree about a clip's value or split.
    """
    root = Path(root)
    if labels is not None:
        raise CorpusError(f"the audformat layout reads its tables from {root / HEADER}; leave "
                          "out --labels (choose tables and columns with --table and --column)")
    header = root / HEADER
    if not header.is_file():
        raise CorpusError(f"{header} not found: an audformat database folder holds db.yaml and its "
                          "tables; point --corpus at that folder")
    audformat = _audformat()
    try:
        db = audformat.Database.load(str(root), load_data=True)
    except Exception as exc:  # audformat raises many kinds; all mean the same to the user
        raise CorpusError(f"cannot load the audformat database at {root} ({type(exc).__name__}: "
                          f"{exc}); check db.yaml and that every table file it lists exists") from exc

    clip_tables = [n for n in db.tables]  # filewise and segmented; misc tables are separate
    names = _names(table) or clip_tables
    missing = [n for n in names if n not in clip_tables]
    if missing:
        misc = [n for n in missing if n in db.misc_tables]
        raise CorpusError(
            f"{header}: no filewise or segmented table {examples(missing)}"
            + (f" ({examples(misc)} is a misc table, which does not list clips)" if misc else "")
            + f"; tables of this database: {examples(clip_tables, 50) or 'none'}")
    if not names:
        raise CorpusError(f"{header}: the database has no filewise or segmented table to read clips from")
    columns = _names(column)
    if columns is not None:
        present = sorted({c for n in names for c in db[n].columns})
        absent = [c for c in columns if c not in present]
        if absent:
            raise CorpusError(f"{header}: no column {examples(absent)} in table(s) "
                              f"{examples(names)}; their columns: {examples(present, 50) or 'none'}")

    frames = [_clip_frame(db, n, root, columns) for n in names]
    rows = pd.concat(frames, axis=0, sort=False)
    label_cols = [c for c in rows.columns if not c.startswith("_")]
    problems: list[str] = []
    if rows.index.has_duplicates:
        dup = rows[rows.index.duplicated(keep=False)]
        counts = dup[label_cols + ["_split"]].groupby(level=0, sort=False).nunique(dropna=True)
        clash = counts[(counts > 1).any(axis=1)]
        if len(clash):
            cid = clash.index[0]
            col = next(c for c in clash.columns if clash.loc[cid, c] > 1)
            tables = examples(pd.unique(dup.loc[[cid], "_table"]))
            what = "split" if col == "_split" else f"column {col!r}"
            raise CorpusError(f"{header}: tables {tables} give clip {cid!r} different values in "
                              f"{what} ({len(clash)} clip(s) so); choose one table with --table")
        rows = rows.groupby(level=0, sort=False).first()

    speakers: dict[str, str] = {}
    for n in clip_tables:
        col = _speaker_column(db, n)
        if col is None:
            continue
        frame = _clip_frame(db, n, root, [col])
        for cid, value, path in zip(frame.index, frame[col], frame["_path"]):
            if not (isinstance(value, float) and np.isnan(value)):
                speakers.setdefault(cid, str(value))
                speakers.setdefault(f"file:{path}", str(value))
    group = pd.Series({cid: speakers.get(cid, speakers.get(f"file:{p}", ""))
                       for cid, p in rows["_path"].items()}, dtype=object)

    spans = {cid: (None if np.isnan(s) else float(s), None if np.isnan(e) else float(e))
             for cid, s, e in zip(rows.index, rows["_start"], rows["_end"])
             if not (np.isnan(s) and np.isnan(e))}
    errors: dict[str, str] = {}
    if spans:
        seg = rows.loc[list(spans), ["_path", "_start", "_end", "_where"]]
        seg.columns = ["path", "start", "end", "where"]
        errors = check_segments(seg)
        if errors:
            problems.append(f"{len(errors)} segment(s) cannot be extracted ({examples(sorted(errors))}); "
                            "each is recorded as a failed clip")
    missing_files = sorted({p for p in rows["_path"] if not Path(p).is_file()})
    if missing_files:
        problems.append(f"{len(missing_files)} file(s) listed in the tables do not exist under {root} "
                        f"({examples(missing_files)}); kept, extraction will report them as failed")
    split = rows["_split"].fillna("").astype(str)
    unknown = int((split == "").sum())
    if unknown and unknown < len(split):
        problems.append(f"{unknown} clip(s) are in no table with a train/dev/test split; kept with split ''")
    meta = {"database": _database_meta(db, header, names, label_cols)}
    return assemble_corpus(
        root, "audformat",
        audio=dict(zip(rows.index, rows["_path"])),
        labels=rows[label_cols],
        split=split,
        group=group,
        problems=problems,
        audio_where=f"{root} (as listed in the tables of {HEADER})",
        audio_listed=True,
        spans=spans,
        errors=errors,
        meta=meta,
    )


def _database_meta(db, header: Path, tables: list[str], columns: list[str]) -> dict:
    """Name, source, version and header hash of the database, and what was read from it."""
    meta = dict(db.meta or {})
    audb = meta.get("audb") if isinstance(meta.get("audb"), dict) else {}
    version = meta.get("version") or audb.get("version")
    return {
        "name": db.name,
        "version": None if version is None else str(version),
        "source": db.source or None,
        "header_blake2b": hashlib.blake2b(header.read_bytes(), digest_size=16).hexdigest(),
        "tables": list(tables),
        "columns": list(columns),
        "splits": {sid: getattr(s, "type", None) for sid, s in db.splits.items()},
    }


__all__ = ["database_split", "read_audformat_corpus"]
