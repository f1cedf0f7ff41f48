"""Corpus readers, one module per layout, registered in :data:`LAYOUTS`.

A reader is a function ``(root, *, labels=None) -> Corpus``. ``labels`` says where the label
tables are when they are not in the default place: the A-VB ``labels`` folder, the ExVo
``data_info.csv`` file, or the CSV of the ``csv`` layout (default ``root/labels.csv``).

Example:
    >>> sorted(LAYOUTS)
    ['avb', 'csv', 'exvo', 'iemocap']

Any layout can carry the transcript of each clip as the label column ``text`` (the ``iemocap``
reader fills it from the release; for other layouts ``read_corpus(..., text_column=COL)``
renames a label column to ``text``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol

from data.corpus import Corpus, CorpusError


class Reader(Protocol):
    """A corpus reader."""

    def __call__(self, root: Path, *, labels: Path | None = None) -> Corpus: ...


LAYOUTS: dict[str, Reader] = {}
"""Reader functions by layout name."""


def register_layout(name: str) -> Callable[[Reader], Reader]:
    """Decorator that adds a reader to :data:`LAYOUTS` under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def add(reader: Reader) -> Reader:
        if name in LAYOUTS:
            raise ValueError(f"layout {name!r} is already registered by {LAYOUTS[name]!r}")
        LAYOUTS[name] = reader
        return reader

    return add


TEXT_COLUMN = "text"
"""The label column that holds a clip's transcript, in every layout."""


def read_corpus(
    root: str | os.PathLike,
    layout: str,
    *,
    labels: str | os.PathLike | None = None,
    text_column: str | None = None,
) -> Corpus:
    """Read a corpus folder with the reader of ``layout``.

    Args:
        root: the corpus folder.
        layout: a key of :data:`LAYOUTS` (``avb``, ``exvo``, ``csv``, ``iemocap``).
        labels: where the label tables are, if not in the layout's default place. A relative
            path is taken from the working directory, or else from ``root``.
        text_column: a label column holding each clip's transcript; it becomes the column
            :data:`TEXT_COLUMN` (``text``), as text.

    Returns:
        The corpus.

    Raises:
        CorpusError: unknown layout, missing root, a reader's fatal problem, or a
            ``text_column`` the labels lack.
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
    corpus = LAYOUTS[layout](root_path, labels=label_path)
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
from data.corpora import avb, csv, exvo, iemocap  # noqa: E402,F401

__all__ = ["LAYOUTS", "TEXT_COLUMN", "Reader", "read_corpus", "register_layout", "with_text_column"]
