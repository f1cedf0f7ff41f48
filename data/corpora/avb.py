"""Reader for the A-VB 2022 layout (ACII Affective Vocal Bursts challenge).

::

    ROOT/audio/wav/<id>.wav
    ROOT/labels/data_info.csv     File_ID, Split, Country [, Age, Subject_ID ...]   (required)
    ROOT/labels/high_info.csv     File_ID, Split, the 10 emotions
    ROOT/labels/two_info.csv      File_ID, Split, Valence, Arousal
    ROOT/labels/culture_info.csv  File_ID, Split, 40 columns <Country>_<Emotion>
    ROOT/labels/type_info.csv     File_ID, Split, Voc_Type

``File_ID`` is written with brackets (``[10119]``); ids without brackets are accepted too.
Columns are read by name, in any order and any case. A missing label file makes its task
unavailable (noted in ``problems``); the audio folder and ``data_info.csv`` are required.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from data.corpora.registry import register_layout
from data.corpus import (
    Corpus,
    CorpusError,
    assemble_corpus,
    canonical_columns,
    dedupe_ids,
    examples,
    find_column,
    normalise_splits,
    read_table,
    require_columns,
    scan_audio,
    strip_ids,
    to_numeric,
)
from data.tasks import CULTURE_COLUMNS, EMOTIONS, TWO_COLUMNS, normalise_country, normalise_voc_type

logger = logging.getLogger(__name__)

SUBJECT_NAMES = ("Subject_ID", "Subject", "SubjectID", "Speaker", "Speaker_ID", "Spk", "Spk_ID")
"""Column names taken as the speaker/subject id (matched ignoring case and underscores)."""

KEY_COLUMNS = ("File_ID", "Split")


@dataclass(frozen=True)
class _LabelFile:
    name: str
    numeric: tuple[str, ...]
    classes: tuple[str, ...]
    task: str
    bounded: bool  # values must lie in [0, 1]


_FILES = (
    _LabelFile("high_info.csv", EMOTIONS, (), "avb-high", True),
    _LabelFile("two_info.csv", TWO_COLUMNS, (), "avb-two", False),
    _LabelFile("culture_info.csv", CULTURE_COLUMNS, (), "avb-culture", True),
    _LabelFile("type_info.csv", (), ("Voc_Type",), "avb-type", False),
)


def read_id_table(
    path: Path,
    *,
    numeric: tuple[str, ...],
    classes: tuple[str, ...],
    problems: list[str],
    hint: str,
    table: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Read a HUME-VB table keyed by ``File_ID`` with a ``Split`` column.

    Args:
        path: the CSV.
        numeric: required numeric columns.
        classes: required text columns.
        problems: notes are appended here.
        hint: what the file should hold, for the missing-column message.
        table: the table already read from ``path`` by :func:`read_table`, if any.

    Returns:
        ``(table, split)``: the table indexed by clip id with the requested columns (numeric ones
        as float) plus any other columns as text, and the canonical split of each id (``''``
        when unknown).

    Raises:
        CorpusError: unreadable table, missing column, non-numeric value, conflicting duplicate.
    """
    if table is None:
        table = read_table(path, what="label table", numeric=numeric)
    wanted = (*KEY_COLUMNS, *numeric, *classes)
    table = canonical_columns(table, wanted)
    require_columns(table, wanted, path=path, hint=hint)
    for col in numeric:
        table[col] = to_numeric(table[col], path=path, column=col)
    no_id = table["File_ID"].isna().to_numpy()
    if no_id.any():
        problems.append(
            f"{path.name}: {int(no_id.sum())} row(s) without File_ID "
            f"(lines {examples(list(np.flatnonzero(no_id) + 2))}); skipped"
        )
        table = table[~no_id]
    ids = strip_ids(table["File_ID"])
    split = normalise_splits(table["Split"])
    unknown = table.loc[split.isna().to_numpy(), "Split"]
    if len(unknown):
        problems.append(
            f"{path.name}: {len(unknown)} row(s) have an unknown Split value "
            f"({examples(sorted(set(unknown)))}); expected Train/Val/Test, treated as unknown"
        )
    table = table.assign(Split=split.fillna("").to_numpy())
    table = dedupe_ids(table.drop(columns=["File_ID"]), ids, path=path, problems=problems)
    return table.drop(columns=["Split"]), table["Split"]


def normalise_classes(
    values: pd.Series, normalise: Callable[[object], str | None], *, column: str, where: str, problems: list[str]
) -> pd.Series:
    """Map class values to canonical spellings; unrecognised values are kept and noted."""
    mapping = {}
    unknown = []
    for value in values.dropna().unique():
        canon = normalise(value)
        if canon is None:
            unknown.append(value)
        mapping[value] = canon if canon is not None else value
    if unknown:
        count = int(values.isin(unknown).sum())
        problems.append(
            f"{where}: column {column!r} has {count} unrecognised value(s) "
            f"({examples(sorted(map(str, unknown)))}); kept as written"
        )
    return values.map(mapping)


def check_range(table: pd.DataFrame, columns: tuple[str, ...], *, where: str, problems: list[str]) -> None:
    """Note values of ``columns`` outside [0, 1] (kept as they are)."""
    block = table[list(columns)].to_numpy(dtype=float)
    out = (block < 0) | (block > 1)
    if out.any():
        rows, cols = np.nonzero(out)
        sample = [f"{table.index[r]}/{columns[c]}={block[r, c]:g}" for r, c in zip(rows[:5], cols[:5])]
        problems.append(
            f"{where}: {int(out.sum())} value(s) outside [0, 1] ({', '.join(sample)}); kept as written"
        )


@register_layout("avb")
def read_avb(root: Path, *, labels: Path | None = None) -> Corpus:
    """Read an A-VB 2022 release.

    Args:
        root: the corpus folder (holding ``audio/wav`` and ``labels``).
        labels: the folder with the five label CSVs (default ``root/labels``).

    Returns:
        The corpus. Label columns: the 10 emotions, Valence, Arousal, the 40 culture columns,
        Voc_Type, Country, and Age / Subject_ID when data_info.csv has them. ``group`` is the
        subject column of data_info.csv when present.

    Raises:
        CorpusError: no ``audio/wav`` folder, no ``data_info.csv``, a missing column in a present
            file, a non-numeric label, or conflicting duplicate rows.
    """
    root = Path(root)
    audio_dir = root / "audio" / "wav"
    label_dir = Path(labels) if labels is not None else root / "labels"
    if not audio_dir.is_dir():
        raise CorpusError(
            f"A-VB audio folder {audio_dir} not found; the A-VB layout keeps clips in "
            "ROOT/audio/wav/<id>.wav (for other layouts use --layout exvo or csv)"
        )
    info_path = label_dir / "data_info.csv"
    if not info_path.is_file():
        raise CorpusError(
            f"A-VB table {info_path} not found; it is required (File_ID, Split, Country). "
            "Check the corpus root or pass the labels folder"
        )
    problems: list[str] = []

    info = read_table(info_path, what="A-VB data table", numeric=("Age",))
    subject_col = find_column(info, SUBJECT_NAMES)
    has_age = find_column(info, ["Age"]) is not None
    info_table, split = read_id_table(
        info_path,
        numeric=("Age",) if has_age else (),
        classes=("Country",) + ((subject_col,) if subject_col else ()),
        problems=problems,
        hint="data_info.csv must hold File_ID, Split and Country",
        table=info,
    )
    frames: list[pd.DataFrame] = []
    splits: list[tuple[str, pd.Series]] = []
    for spec in _FILES:
        path = label_dir / spec.name
        if not path.is_file():
            problems.append(f"label file {path} not found; task {spec.task} is unavailable")
            continue
        table, file_split = read_id_table(
            path,
            numeric=spec.numeric,
            classes=spec.classes,
            problems=problems,
            hint=f"{spec.name} is one of the A-VB label files; see the A-VB 2022 release",
        )
        table = table[list(spec.numeric + spec.classes)]
        if spec.bounded:
            check_range(table, spec.numeric, where=spec.name, problems=problems)
        if spec.classes:
            table = table.assign(
                Voc_Type=normalise_classes(
                    table["Voc_Type"], normalise_voc_type, column="Voc_Type", where=spec.name, problems=problems
                )
            )
        frames.append(table)
        splits.append((spec.name, file_split))

    extra = pd.DataFrame(index=info_table.index)
    extra["Country"] = normalise_classes(
        info_table["Country"], normalise_country, column="Country", where="data_info.csv", problems=problems
    )
    if has_age:
        extra["Age"] = info_table["Age"]
    group = pd.Series(dtype=object)
    if subject_col:
        extra["Subject_ID"] = info_table[subject_col]
        group = info_table[subject_col].fillna("")
    frames.append(extra)
    merged = pd.concat(frames, axis=1, join="outer", sort=False)
    merged.index.name = "clip_id"

    # data_info.csv decides the split; the other files fill in clips it lacks.
    all_split = split.replace("", np.nan)
    for name, file_split in splits:
        file_split = file_split.replace("", np.nan).dropna()
        common = file_split.index.intersection(all_split.dropna().index)
        clash = common[(all_split.loc[common] != file_split.loc[common]).to_numpy()]
        if len(clash):
            problems.append(
                f"{name}: {len(clash)} clip(s) have a Split that differs from data_info.csv "
                f"({examples(list(clash))}); data_info.csv wins"
            )
        all_split = all_split.combine_first(file_split)
    all_split = all_split.fillna("")

    audio = scan_audio(audio_dir, suffixes=(".wav",), problems=problems)
    return assemble_corpus(
        root,
        "avb",
        audio=audio,
        labels=merged,
        split=all_split,
        group=group,
        problems=problems,
        audio_where=str(audio_dir),
    )
