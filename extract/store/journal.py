"""The journal: rows written during extraction, as parts that each appear whole or not at all.

``WORKDIR/features.journal/<key>/part-<ns>-<pid>-<seq>.h5`` holds a batch of finished rows (and
failures and notes) of one set; ``set.json`` beside them the set's header when it is newer
than the compacted file's. A row counts as stored once its part is renamed into place; readers
overlay the compacted set with the parts, oldest first (parts sort by their names).
"""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import h5py
import numpy as np

from extract.store.files import atomic_h5
from extract.store.schema import SetHeader
from extract.store.view import STR

if TYPE_CHECKING:
    from extract.store.feature_store import FeatureStore

log = logging.getLogger(__name__)

PART_RE = re.compile(r"^part-(\d+)-(\d+)-(\d+)\.h5$")


def part_name(seq: int) -> str:
    """Name of a new journal part; it sorts after every earlier part (see :func:`part_paths`)."""
    return f"part-{time.time_ns()}-{os.getpid()}-{seq}.h5"


def part_paths(folder: Path) -> list[Path]:
    """The parts in one set's journal folder, oldest first (by time, pid, counter)."""
    if not folder.is_dir():
        return []
    parts = []
    for p in folder.iterdir():
        m = PART_RE.match(p.name)
        if m:
            parts.append(((int(m.group(1)), int(m.group(2)), int(m.group(3))), p))
    return [p for _, p in sorted(parts)]


def checked(parent: h5py.Group, name: str, data: np.ndarray) -> None:
    """A data set with a Fletcher-32 checksum per chunk: flipped bytes fail the read."""
    parent.create_dataset(name, data=data, fletcher32=data.size > 0)


# --------------------------------------------------------------------------------------------
class SetWriter:
    """Buffers finished rows of one set and writes them as atomic journal parts.

    A row counts as stored once :meth:`flush` returns. Use as a context manager: leaving the
    block flushes what is buffered, also when an exception (Ctrl-C) is on its way.

    Args:
        store: the store.
        header: the set's header (already registered).
        flush_rows: write a part when this many records are buffered.
        flush_bytes: ... or when the buffered arrays exceed this many bytes.
        flush_seconds: ... or when the oldest buffered record is this old.
    """

    def __init__(self, store: FeatureStore, header: SetHeader, *, flush_rows: int = 256,
                 flush_bytes: int = 64 << 20, flush_seconds: float = 30.0,
                 auto_flush: bool = True) -> None:
        self.store = store
        self.header = header
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        self.flush_seconds = flush_seconds
        self.auto_flush = auto_flush  # False: the caller flushes at its own boundaries (batches)
        self._rows: list[tuple[str, str, dict[str, np.ndarray]]] = []
        self._fails: list[tuple[str, str, str]] = []
        self._notes: list[tuple[str, str]] = []
        self._bytes = 0
        self._since = time.monotonic()
        self._seq = 0
        self.rows_written = 0
        self.failures_written = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def add(self, clip_id: str, content_hash: str, values: dict[str, np.ndarray]) -> None:
        """Buffer one clip's values (every field of the header, shapes checked)."""
        row = {}
        for name, spec in self.header.fields.items():
            if name not in values:
                raise ValueError(f"clip {clip_id}: extractor gave no value for field {name!r}")
            a = np.asarray(values[name])
            expect = spec.shape  # of a row, or of each frame of a ragged row
            got = a.shape[1:] if spec.ragged else a.shape
            if tuple(got) != tuple(expect):
                raise ValueError(f"clip {clip_id}: field {name!r} has shape {a.shape}, "
                                 f"expected {'(T, ' if spec.ragged else '('}{expect})")
            row[name] = a.astype(spec.dtype, copy=False)
            self._bytes += row[name].nbytes
        self._rows.append((clip_id, content_hash, row))
        self._maybe_flush()

    def fail(self, clip_id: str, content_hash: str, reason: str) -> None:
        """Record that a clip failed, with the reason (shown by ``verify`` and reports)."""
        self._fails.append((clip_id, content_hash, reason))
        self._maybe_flush()

    def note(self, clip_id: str, text: str) -> None:
        """Record a warning about a clip (it is still stored)."""
        self._notes.append((clip_id, text))

    def due(self) -> bool:
        """True when the buffer has reached a flush threshold (rows, bytes or age)."""
        n = len(self._rows) + len(self._fails)
        return (n >= self.flush_rows or self._bytes >= self.flush_bytes
                or (n > 0 and time.monotonic() - self._since >= self.flush_seconds))

    def _maybe_flush(self) -> None:
        if self.auto_flush and self.due():
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._rows) + len(self._fails)

    def flush(self) -> None:
        """Write the buffered records as one part: temporary name, fsync, rename.

        Raises:
            OSError: the part could not be written (e.g. disk full). Nothing partial remains;
                the buffered records stay buffered so a later flush can retry.
        """
        if not self._rows and not self._fails and not self._notes:
            return
        d = self.store.journal / self.header.key
        d.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = part_name(self._seq)
        rows = sorted(self._rows, key=lambda r: r[0])
        try:
            with atomic_h5(d / name, reserve=int(self._bytes * 1.05) + (256 << 10)) as f:
                f.attrs["key"] = self.header.key
                f.attrs["config_hash"] = self.header.config_hash
                f.create_dataset("ids", data=np.array([r[0] for r in rows], dtype=object), dtype=STR)
                f.create_dataset("hashes", data=np.array([r[1] for r in rows], dtype=object),
                                 dtype=STR)
                fg = f.create_group("fields")
                for fname, spec in self.header.fields.items():
                    arrs = [r[2][fname] for r in rows]
                    if spec.ragged:
                        node = fg.create_group(fname)
                        lengths = [len(a) for a in arrs]
                        checked(node, "offsets", np.concatenate([[0], np.cumsum(lengths)]
                                                                 ).astype(np.int64))
                        checked(node, "data", np.concatenate(arrs) if arrs and sum(lengths)
                                 else np.zeros((0, *spec.shape), spec.dtype))
                    else:
                        checked(fg, fname, np.stack(arrs) if arrs
                                 else np.zeros((0, *spec.shape), spec.dtype))
                failg = f.create_group("failures")
                for i, col in enumerate(("ids", "hashes", "reasons")):
                    failg.create_dataset(col, data=np.array([x[i] for x in self._fails], dtype=object),
                                         dtype=STR)
                ng = f.create_group("notes")
                ng.create_dataset("ids", data=np.array([x[0] for x in self._notes], dtype=object),
                                  dtype=STR)
                ng.create_dataset("texts", data=np.array([x[1] for x in self._notes], dtype=object),
                                  dtype=STR)
        except BaseException:
            self._seq -= 1
            raise
        self.rows_written += len(self._rows)
        self.failures_written += len(self._fails)
        log.debug("stored part %s: %d rows, %d failures", name, len(self._rows), len(self._fails))
        self._rows, self._fails, self._notes = [], [], []
        self._bytes = 0
        self._since = time.monotonic()
