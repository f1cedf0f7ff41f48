"""Compaction of one set: its latest records, sorted by clip id, written into one new file.

The result does not depend on how the work was split into runs, parts or shards. Memory is
bounded by bytes, not rows: :func:`row_blocks` cuts the rows into blocks of at most
:data:`COMPACT_BLOCK_BYTES` of field values (a row larger than that is a block of its own),
:func:`gather` reads only the rows of one block (runs of consecutive rows as slices), and a
block is written before the next is read. What grows with the row count is only the clip
ids, hashes and per-row frame counts.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from extract.base import FieldSpec
from extract.store.schema import LAYOUT_VERSION, SCHEMA_VERSION, SetHeader
from extract.store.view import ROW_BLOCK, STR, SetView

COMPACT_BLOCK_BYTES = 64 * 2**20
"""Bytes of field values one compaction block holds (about three blocks' worth are in memory
at once); a block always holds at least one row, so one clip larger than this is one block."""


def write_set(g: h5py.Group, header: SetHeader, view: SetView) -> None:
    """Write one set's latest records into ``g`` (a per-set file's root), sorted by clip id,
    block by block: at most :data:`COMPACT_BLOCK_BYTES` of field values are read at once.

    The header goes first, before any data, so a truncated file still names its set (the
    bytes ``verify --repair`` searches).
    """
    g.attrs["header"] = header.to_json()
    g.attrs["schema_version"] = SCHEMA_VERSION
    g.attrs["layout_version"] = LAYOUT_VERSION
    g.attrs["key"] = header.key
    g.attrs["name"] = header.name
    g.attrs["spec"] = header.spec
    g.attrs["config_hash"] = header.config_hash
    done = sorted(c for c, r in view.records.items() if r.reason is None)
    n = len(done)
    g.create_dataset("ids", data=np.array(done, dtype=object), dtype=STR)
    g.create_dataset("hashes", data=np.array([view.records[c].hash for c in done], dtype=object),
                     dtype=STR)
    failed = sorted(c for c, r in view.records.items() if r.reason is not None)
    fg = g.create_group("failures")
    fg.create_dataset("ids", data=np.array(failed, dtype=object), dtype=STR)
    fg.create_dataset("hashes", data=np.array([view.records[c].hash for c in failed], dtype=object),
                      dtype=STR)
    fg.create_dataset("reasons", data=np.array([view.records[c].reason for c in failed],
                                                dtype=object), dtype=STR)
    note_ids = sorted(c for c in view.notes if c in view.records)
    ng = g.create_group("notes")
    flat = [(c, t) for c in note_ids for t in view.notes[c]]
    ng.create_dataset("ids", data=np.array([c for c, _ in flat], dtype=object), dtype=STR)
    ng.create_dataset("texts", data=np.array([t for _, t in flat], dtype=object), dtype=STR)
    fields = g.create_group("fields")
    for name, spec in header.fields.items():
        if spec.ragged:
            node = fields.create_group(name)
            lengths = ragged_lengths(view, name, done)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            node.create_dataset("offsets", data=offsets, fletcher32=True)
            total = int(offsets[-1])
            data = node.create_dataset(
                "data", shape=(total, *spec.shape), dtype=spec.dtype, fletcher32=bool(total),
                chunks=(max(1, min(total, frame_chunk(spec))), *spec.shape) if total else None)
            for lo, hi in row_blocks(lengths * frame_bytes(spec), COMPACT_BLOCK_BYTES):
                arrs = gather(view, name, spec, done[lo:hi])
                if int(offsets[hi] - offsets[lo]):
                    data[offsets[lo]:offsets[hi]] = np.concatenate(arrs)
        else:
            chunk_rows = max(1, min(n, row_chunk(spec)))
            ds = fields.create_dataset(
                name, shape=(n, *spec.shape), dtype=spec.dtype, fletcher32=bool(n),
                chunks=(chunk_rows, *chunk_tail(spec)) if n else None)
            for lo, hi in row_blocks(np.full(n, frame_bytes(spec)), COMPACT_BLOCK_BYTES):
                ds[lo:hi] = gather(view, name, spec, done[lo:hi])
        for ak, av in spec.attrs.items():
            (fields[name]).attrs[ak] = json.dumps(av)


def row_blocks(row_bytes: np.ndarray, budget: int, *, max_rows: int = ROW_BLOCK
               ) -> list[tuple[int, int]]:
    """Consecutive ``(lo, hi)`` row ranges whose bytes stay within ``budget``.

    Each block holds at least one row (a row larger than the budget is a block of its own)
    and at most ``max_rows`` rows.

    Example:
        >>> row_blocks(np.array([4, 4, 4, 10, 1]), 8)
        [(0, 2), (2, 3), (3, 4), (4, 5)]
    """
    blocks: list[tuple[int, int]] = []
    lo, used = 0, 0
    for i, size in enumerate(np.asarray(row_bytes, dtype=np.int64).tolist()):
        if i > lo and (used + size > budget or i - lo >= max_rows):
            blocks.append((lo, i))
            lo, used = i, 0
        used += size
    if lo < len(row_bytes):
        blocks.append((lo, len(row_bytes)))
    return blocks


def frame_bytes(spec: FieldSpec) -> int:
    """Bytes of one fixed row, or of one frame of a ragged row."""
    return int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize


def ragged_lengths(view: SetView, name: str, ids: Sequence[str]) -> np.ndarray:
    """Frames of each of ``ids`` in a ragged field, read from the sources' offsets only."""
    per_source: dict[int, np.ndarray] = {}
    out = np.zeros(len(ids), dtype=np.int64)
    for i, cid in enumerate(ids):
        r = view.records[cid]
        if r.source not in per_source:
            per_source[r.source] = view.sources[r.source].lengths(name)
        out[i] = per_source[r.source][r.row]
    return out


def row_chunk(spec: FieldSpec) -> int:
    # ~256 KiB chunks; for (layers, dim) rows a chunk holds one layer of many rows
    tail = int(np.prod(chunk_tail(spec))) * np.dtype(spec.dtype).itemsize
    return max(1, (256 * 1024) // max(1, tail))


def chunk_tail(spec: FieldSpec) -> tuple[int, ...]:
    if len(spec.shape) >= 2:
        return (1, *spec.shape[1:])  # one layer per chunk: a layer reads without the others
    return spec.shape


def frame_chunk(spec: FieldSpec) -> int:
    row = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    return max(1, (256 * 1024) // max(1, row))


def gather(view: SetView, name: str, spec: FieldSpec, ids: Sequence[str]
            ) -> np.ndarray | list[np.ndarray]:
    """Rows of ``ids`` from their sources; contiguous runs are read as slices."""
    recs = [view.records[c] for c in ids]
    out: list[Any] = [None] * len(ids)
    by_source: dict[int, list[tuple[int, int]]] = {}
    for i, r in enumerate(recs):
        by_source.setdefault(r.source, []).append((r.row, i))
    for si, pairs in by_source.items():
        pairs.sort()
        # one read per run of consecutive rows: only the rows asked for are read, so a block's
        # memory is its own bytes even when a source's rows are spread over the file
        start = 0
        for k in range(1, len(pairs) + 1):
            if k < len(pairs) and pairs[k][0] == pairs[k - 1][0] + 1:
                continue
            lo, hi = pairs[start][0], pairs[k - 1][0] + 1
            rows = view.sources[si].read_rows(name, spec, lo, hi)
            for row, i in pairs[start:k]:
                out[i] = rows[row - lo]
            start = k
    if spec.ragged:
        return out
    if not out:
        return np.zeros((0, *spec.shape), dtype=spec.dtype)
    return np.stack(out).astype(spec.dtype, copy=False)


