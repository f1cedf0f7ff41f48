"""Corpus readers, one module per layout, registered in :data:`LAYOUTS`.

A reader is a function ``(root, *, labels=None) -> Corpus``. ``labels`` says where the label
tables are when they are not in the default place: the A-VB ``labels`` folder, the ExVo
``data_info.csv`` file, or the CSV of the ``csv`` layout (default ``root/labels.csv``).

Example:
    >>> sorted(LAYOUTS)
    ['avb', 'csv', 'exvo']
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


def read_corpus(
    root: str | os.PathLike, layout: str, *, labels: str | os.PathLike | None = None
) -> Corpus:
    """Read a corpus folder with the reader of ``layout``.

    Args:
        root: the corpus folder.
        layout: a key of :data:`LAYOUTS` (``avb``, ``exvo``, ``csv``).
        labels: where the label tables are, if not in the layout's default place. A relative
            path is taken from the working directory, or else from ``root``.

    Returns:
        The corpus.

    Raises:
        CorpusError: unknown layout, missing root, or a reader's fatal problem.
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
    return LAYOUTS[layout](root_path, labels=label_path)


# Importing the reader modules fills LAYOUTS.
from data.corpora import avb, csv, exvo  # noqa: E402,F401

__all__ = ["LAYOUTS", "Reader", "read_corpus", "register_layout"]
