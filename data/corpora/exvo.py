"""Reader for the ExVo 2022 layout (ICML Expressive Vocalizations workshop, multitask track).

::

    ROOT/data_info.csv        File_ID, Split, Subject_ID, Country, Age, the 10 emotions
    ROOT/wav/<id>.wav         (or ROOT/audio/wav/<id>.wav)

Columns are read by name, in any order. ``File_ID`` and ``Split`` are required; a missing
emotion, Country or Age column is noted in ``problems`` (the ``exvo`` task then cannot run).
Country may be a code or a name; it is normalised to the names in ``data.tasks.COUNTRIES``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from data.corpora.registry import register_layout
from data.corpora.avb import SUBJECT_NAMES, check_range, normalise_classes, read_id_table
from data.corpus import Corpus, CorpusError, assemble_corpus, find_column, read_table, scan_audio
from data.tasks import EMOTIONS, normalise_country

logger = logging.getLogger(__name__)

AUDIO_DIRS = ("wav", "audio/wav")
"""Audio folders tried in this order, relative to the root."""


@register_layout("exvo")
def read_exvo(root: Path, *, labels: Path | None = None) -> Corpus:
    """Read an ExVo 2022 release.

    Args:
        root: the corpus folder.
        labels: the ``data_info.csv`` file (default ``root/data_info.csv``).

    Returns:
        The corpus; label columns: the 10 emotions, Country, Age and Subject_ID (those present).
        ``group`` is the subject column.

    Raises:
        CorpusError: no audio folder, no ``data_info.csv``, missing ``File_ID``/``Split``, a
            non-numeric label, or conflicting duplicate rows.
    """
    root = Path(root)
    info_path = Path(labels) if labels is not None else root / "data_info.csv"
    audio_dir = next((root / d for d in AUDIO_DIRS if (root / d).is_dir()), None)
    if audio_dir is None:
        raise CorpusError(
            f"ExVo audio folder not found: looked for {[str(root / d) for d in AUDIO_DIRS]}; "
            "check the corpus root"
        )
    if not info_path.is_file():
        raise CorpusError(
            f"ExVo table {info_path} not found; the ExVo layout keeps data_info.csv in the corpus "
            "root (or pass its path as labels)"
        )
    problems: list[str] = []
    info = read_table(info_path, what="ExVo data table", numeric=(*EMOTIONS, "Age"))
    subject_col = find_column(info, SUBJECT_NAMES)
    numeric = tuple(c for c in (*EMOTIONS, "Age") if find_column(info, [c]) is not None)
    classes = tuple(c for c in ("Country", subject_col) if c and find_column(info, [c]) is not None)
    absent = [c for c in (*EMOTIONS, "Country", "Age") if c not in numeric + classes]
    if absent:
        problems.append(
            f"{info_path.name}: no column(s) {absent} (columns found: {list(info.columns)}); "
            "the exvo task is unavailable"
        )
    table, split = read_id_table(
        info_path,
        numeric=numeric,
        classes=classes,
        problems=problems,
        hint="ExVo data_info.csv must hold File_ID and Split",
        table=info,
    )
    emotions = [c for c in EMOTIONS if c in numeric]
    if emotions:
        check_range(table, tuple(emotions), where=info_path.name, problems=problems)
    out = pd.DataFrame(index=table.index)
    for col in emotions:
        out[col] = table[col]
    if "Country" in classes:
        out["Country"] = normalise_classes(
            table["Country"], normalise_country, column="Country", where=info_path.name, problems=problems
        )
    if "Age" in numeric:
        out["Age"] = table["Age"]
    group = pd.Series(dtype=object)
    if subject_col:
        out["Subject_ID"] = table[subject_col]
        group = table[subject_col].fillna("")

    audio = scan_audio(audio_dir, suffixes=(".wav",), problems=problems)
    return assemble_corpus(
        root,
        "exvo",
        audio=audio,
        labels=out,
        split=split,
        group=group,
        problems=problems,
        audio_where=str(audio_dir),
    )
