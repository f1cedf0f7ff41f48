"""``WORKDIR/sets.json``: every set's header outside HDF5, kept so that ``verify --repair`` can
rebuild a set whose files are lost. Which sets exist is read from the set files and the
journal (:class:`extract.store.FeatureStore`); this file is the copy that survives them."""
from __future__ import annotations

import json
from pathlib import Path

from extract.store.files import atomic_write_text
from extract.store.schema import CATALOG_FILE, SetHeader


def catalog_path(workdir: Path) -> Path:
    return Path(workdir) / CATALOG_FILE


def read_catalog(workdir: Path) -> dict[str, SetHeader]:
    """Every header in ``sets.json`` (empty when it is missing or cannot be parsed)."""
    p = catalog_path(workdir)
    if not p.exists():
        return {}
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return {k: SetHeader.from_json(v) for k, v in raw.items()}


def catalog_problem(workdir: Path, stored: set[str]) -> str | None:
    """What is wrong with ``sets.json`` given the ``stored`` set keys, or None.

    Missing while sets are stored, unreadable, or lacking stored sets.
    """
    p = catalog_path(workdir)
    if not p.exists():
        return (f"{p} is missing" if stored else None)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except ValueError:
        return f"{p} cannot be parsed"
    if not isinstance(raw, dict):
        return f"{p} cannot be parsed"
    lacking = sorted(stored - set(raw))
    return f"{p} lacks {len(lacking)} stored set(s): {', '.join(lacking)}" if lacking else None


def write_catalog(workdir: Path, headers: dict[str, SetHeader]) -> None:
    """Replace ``sets.json`` atomically with ``headers``."""
    atomic_write_text(catalog_path(workdir),
                      json.dumps({k: h.to_json() for k, h in headers.items()}, sort_keys=True))
