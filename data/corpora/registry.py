"""The layout registry: :data:`LAYOUTS`, filled by :func:`register_layout` in each reader module.

It lives apart from ``data/corpora/__init__.py`` so that a reader imports the registry, never the
package that imports every reader (no import circle).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, Protocol

from data.corpus import Corpus


class Reader(Protocol):
    """A corpus reader."""

    def __call__(self, root: Path, *, labels: Path | None = None) -> Corpus: ...


LAYOUTS: dict[str, Reader] = {}
"""Reader functions by layout name."""

READER_OPTIONS = ("table", "column", "group_column", "workdir")
"""Keyword options a reader may take besides ``labels``."""


def layout_options(layout: str) -> tuple[str, ...]:
    """The options of :data:`READER_OPTIONS` that the reader of ``layout`` takes."""
    params = inspect.signature(LAYOUTS[layout]).parameters
    return tuple(o for o in READER_OPTIONS if o in params)


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


GROUP_COLUMNS = ("speaker", "speaker_id", "group", "subject")
"""Columns that name a clip's group (speaker/subject) in the layouts whose tables have free
column names (csv, hf): the first one present is the group, never a label. ``--group-column COL``
names another one."""
