"""Corpus readers, one module per layout, registered in :data:`LAYOUTS`.

A reader is a function ``(root, *, labels=None, **options) -> Corpus``. ``labels`` says where
the label tables are when they are not in the default place: the A-VB ``labels`` folder, the
ExVo ``data_info.csv`` file, or the CSV of the ``csv`` layout (default ``root/labels.csv``).
Readers may take further keyword options (:data:`READER_OPTIONS`): ``table`` and ``column``
choose label tables and columns (audformat; ``column`` also for hf), ``workdir`` is where a
reader may keep files it derives from the corpus (hf: the audio it materialises).

Example:
    >>> sorted(LAYOUTS)
    ['audformat', 'avb', 'csv', 'exvo', 'hf', 'iemocap']

Any layout can carry the transcript of each clip as the label column ``text`` (the ``iemocap``
reader fills it from the release; for other layouts ``read_corpus(..., text_column=COL)``
renames a label column to ``text``).
"""
from __future__ import annotations

import os
from pathlib import Path

from data.corpus import Corpus, CorpusError


from data.corpora.registry import (  # noqa: E402  (re-exported: the public names)
    LAYOUTS,
    READER_OPTIONS,
    TEXT_COLUMN,
    Reader,
    layout_options,
    register_layout,
)


def read_corpus(
    root: str | os.PathLike, layout: str, *, labels: str | os.PathLike | None = None,
    table: str | None = None, column: str | None = None, text_column: str | None = None,
    group_column: str | None = None, workdir: str | os.PathLike | None = None,
) -> Corpus:
    """Read a corpus folder with the reader of ``layout``.

    Args:
        root: the corpus folder.
        layout: a key of :data:`LAYOUTS` (``avb``, ``exvo``, ``csv``, ``iemocap``,
            ``audformat``, ``hf``).
        labels: where the label tables are, if not in the layout's default place. A relative
            path is taken from the working directory, or else from ``root``.
        table: label table(s), comma-separated (audformat only).
        column: label column(s), comma-separated (audformat, hf).
        text_column: a label column holding each clip's transcript; it becomes the column
            :data:`TEXT_COLUMN` (``text``), as text.
        group_column: the column naming each clip's group (speaker/subject; csv only).
        workdir: the workdir, for readers that keep derived files there (hf); ignored by the
            others.

    Returns:
        The corpus.

    Raises:
        CorpusError: unknown layout, an option the layout does not take, missing root, a
            reader's fatal problem, or a ``text_column`` the labels lack.
    """
    if layout not in LAYOUTS:
        raise CorpusError(f"unknown corpus layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    root_path = Path(root).expanduser().absolute()
    if not root_path.is_dir():
        raise CorpusError(f"corpus root {root_path} is not a folder; check the path")
    label_path = None
    if labels is not None:
        label_path = Path(labels).expanduser()
        if not label_path.is_absolute() and not label_path.exists():
            label_path = root_path / label_path
        label_path = label_path.absolute()
    takes = layout_options(layout)
    options: dict[str, object] = {}
    for name, value in (("table", table), ("column", column), ("group_column", group_column)):
        if value is None:
            continue
        if name not in takes:
            users = sorted(k for k in LAYOUTS if name in layout_options(k))
            raise CorpusError(f"--{name.replace('_', '-')} is for the {'/'.join(users)} "
                              f"layout(s); layout {layout!r} does not take it")
        options[name] = value
    if "workdir" in takes:
        options["workdir"] = None if workdir is None else Path(workdir).expanduser().absolute()
    corpus = LAYOUTS[layout](root_path, labels=label_path, **options)
    return corpus if text_column is None else with_text_column(corpus, text_column)



def with_text_column(corpus: Corpus, column: str) -> Corpus:
    """The corpus with label column ``column`` renamed to ``text`` and held as text.

    Raises:
        CorpusError: no such label column, or a different ``text`` column already exists.
    """
    from dataclasses import replace

    from data.tasks import class_name

    table = corpus.labels
    if column not in table.columns:
        raise CorpusError(
            f"text column {column!r} is not a label column of the {corpus.layout} corpus at "
            f"{corpus.root}; label columns: {list(table.columns)}"
        )
    if column == TEXT_COLUMN:
        values = table[column]
    elif TEXT_COLUMN in table.columns:
        raise CorpusError(
            f"the corpus at {corpus.root} already has a {TEXT_COLUMN!r} column; drop "
            f"--text-column {column} or rename one of the two columns"
        )
    else:
        values = table[column]
        table = table.drop(columns=[column])
    text = values.map(lambda v: class_name(v) if not isinstance(v, str) else v).astype(object)
    table = table.assign(**{TEXT_COLUMN: text.where(text.notna(), None)})
    return replace(corpus, labels=table)


# Importing the reader modules fills LAYOUTS.
from data.corpora import audformat, avb, csv, exvo, hf, iemocap  # noqa: E402,F401

__all__ = ["LAYOUTS", "READER_OPTIONS", "TEXT_COLUMN", "Reader", "layout_options", "read_corpus",
           "register_layout", "with_text_column"]
