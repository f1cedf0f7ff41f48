"""Reading one set: its sources (the compacted file, then the journal parts), the latest
record of every clip over them (:class:`SetView`, one snapshot), and aligned reads from it.

A view opens every source when it is made and keeps them open, so it reads one consistent
snapshot even while a compaction replaces the set's file and deletes parts: on Linux an open
file stays readable after its name is gone. Make one view for many reads (e.g. one per epoch),
not one per read: building it reads every source's ids.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np

from extract.base import FieldSpec
from extract.store.files import open_read
from extract.store.schema import SetHeader

STR = h5py.string_dtype("utf-8")
ROW_BLOCK = 2048  # at most this many rows per block when reading or compacting


def strs(ds: h5py.Dataset) -> list[str]:
    """A string data set as Python strings."""
    return [s.decode() if isinstance(s, bytes) else str(s) for s in ds[()]]


class Source:
    """One place rows come from: a compacted set or a journal part (kept open while used).

    Args:
        path: the HDF5 file.
        group: the set's group inside it: ``""`` for a per-set file or a part (the set is the
            root), ``sets/<key>`` in a single-file store (layout 1).
    """

    def __init__(self, path: Path, group: str) -> None:
        self.path = path
        self.group = group
        self._file: h5py.File | None = None

    @property
    def g(self) -> h5py.Group:
        if self._file is None:
            self._file = open_read(self.path)
        return self._file[self.group] if self.group else self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def ids(self) -> list[str]:
        return strs(self.g["ids"]) if "ids" in self.g else []

    def hashes(self) -> list[str]:
        return strs(self.g["hashes"]) if "hashes" in self.g else []

    def failures(self) -> list[tuple[str, str, str]]:
        if "failures" not in self.g:
            return []
        f = self.g["failures"]
        return list(zip(strs(f["ids"]), strs(f["hashes"]), strs(f["reasons"])))

    def notes(self) -> list[tuple[str, str]]:
        if "notes" not in self.g:
            return []
        n = self.g["notes"]
        return list(zip(strs(n["ids"]), strs(n["texts"])))

    def lengths(self, name: str) -> np.ndarray:
        """Frames of every row of a ragged field, from its offsets (the data is not read)."""
        return np.diff(self.g["fields"][name]["offsets"][()])

    def stored_bytes(self) -> int:
        """Bytes its data sets take in the file (a bound for rewriting them elsewhere)."""
        total = 0

        def add(_: str, obj: Any) -> None:
            nonlocal total
            if isinstance(obj, h5py.Dataset):
                total += obj.id.get_storage_size()
        self.g.visititems(add)
        return total

    def read_rows(self, name: str, spec: FieldSpec, lo: int, hi: int) -> list[np.ndarray] | np.ndarray:
        """Rows lo..hi-1 of a field: an array for fixed fields, a list of arrays for ragged."""
        node = self.g["fields"][name]
        if not spec.ragged:
            return node[lo:hi]
        offsets = node["offsets"][lo:hi + 1]
        data = node["data"][offsets[0]:offsets[-1]]
        return [data[offsets[i] - offsets[0]:offsets[i + 1] - offsets[0]] for i in range(hi - lo)]


@dataclass
class Record:
    """The latest record of one clip: where its row is, or why it failed."""

    source: int          # index into the view's sources
    row: int             # row in that source (-1 for a failure)
    hash: str
    reason: str | None   # failure reason, None for a row of values


class SetView:
    """Latest record per clip of one set over its sources (oldest first), and reads from them.

    Within a set the newest record of a clip wins: a part is newer than the compacted file,
    and parts are ordered by their names. One exception keeps computed values: a failure does
    not replace a stored row with the same content hash (the same audio), whatever wrote it. Use as a context manager (or :meth:`close`).

    Raises:
        OSError: a source cannot be opened (gone or damaged) while the view is made.
    """

    def __init__(self, header: SetHeader, sources: list[Source]) -> None:
        self.header = header
        self.sources = sources
        self.records: dict[str, Record] = {}
        self.notes: dict[str, list[str]] = {}
        for si, src in enumerate(sources):
            for row, (cid, h) in enumerate(zip(src.ids(), src.hashes())):
                self.records[cid] = Record(si, row, h, None)
            for cid, h, reason in src.failures():
                kept = self.records.get(cid)
                if kept is not None and kept.reason is None and kept.hash == h:
                    continue  # a failure never replaces a stored row of the same audio
                self.records[cid] = Record(si, -1, h, reason)
            for cid, text in src.notes():
                self.notes.setdefault(cid, [])
                if text not in self.notes[cid]:
                    self.notes[cid].append(text)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for s in self.sources:
            s.close()

    def done(self) -> dict[str, str]:
        """Clip id -> content hash of every stored row."""
        return {c: r.hash for c, r in self.records.items() if r.reason is None}

    def failed(self) -> dict[str, tuple[str, str]]:
        """Clip id -> (content hash, reason) of every failure."""
        return {c: (r.hash, r.reason) for c, r in self.records.items() if r.reason is not None}

    def read(self, name: str, ids: Sequence[str], *, index: Any = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """A fixed field aligned to ``ids`` (see :meth:`extract.store.FeatureStore.read`)."""
        spec = self.header.fields.get(name)
        if spec is None:
            raise KeyError(f"set {self.header.key} has no field {name!r}; fields: "
                           f"{sorted(self.header.fields)}")
        if spec.ragged:
            raise ValueError(f"field {name!r} is ragged: use read_sequence()")
        row_shape = spec.shape if index is None else np.empty(spec.shape)[index].shape
        out = np.zeros((len(ids), *row_shape), dtype=spec.dtype)
        present = np.zeros(len(ids), dtype=bool)
        by_source: dict[int, list[tuple[int, int]]] = {}
        for i, cid in enumerate(ids):
            r = self.records.get(cid)
            if r is not None and r.reason is None:
                by_source.setdefault(r.source, []).append((r.row, i))
        for si, pairs in by_source.items():
            pairs.sort()
            rows = np.array([p[0] for p in pairs])
            dest = np.array([p[1] for p in pairs])
            ds = self.sources[si].g["fields"][name]
            # Read contiguous blocks of rows (fast hyperslabs), keep the ones we need.
            for lo in range(0, len(rows), ROW_BLOCK):
                r_blk, d_blk = rows[lo:lo + ROW_BLOCK], dest[lo:lo + ROW_BLOCK]
                a, b = int(r_blk[0]), int(r_blk[-1]) + 1
                sel = (slice(a, b),) if index is None else (slice(a, b), *np.index_exp[index])
                block = ds[sel]
                out[d_blk] = block[r_blk - a]
            present[dest] = True
        return out, present

    def read_sequence(self, name: str, clip_id: str) -> np.ndarray:
        """One clip's frame sequence of a ragged field (reads only that clip's frames)."""
        r = self.records.get(clip_id)
        if r is None or r.reason is not None:
            raise KeyError(f"clip {clip_id!r} has no stored row in set {self.header.key}")
        spec = self.header.fields[name]
        return self.sources[r.source].read_rows(name, spec, r.row, r.row + 1)[0]

    def read_sequences(self, name: str, ids: Sequence[str]) -> list[np.ndarray | None]:
        """Frame sequences for many clips (None where missing)."""
        spec = self.header.fields[name]
        out: list[np.ndarray | None] = [None] * len(ids)
        for i, cid in enumerate(ids):
            r = self.records.get(cid)
            if r is not None and r.reason is None:
                out[i] = self.sources[r.source].read_rows(name, spec, r.row, r.row + 1)[0]
        return out
