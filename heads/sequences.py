"""Frame sequences for the sequence heads: read from a ragged store field, standardise, pad.

A ragged field (SSL ``frames_l12``, ``logmel``, openSMILE ``lld``) holds one ``(frames, D)``
array per clip. :func:`load_sequences` aligns them to the experiment's clip ids;
:func:`fit_frame_stats` fits the per-dimension mean and standard deviation over every Train
frame; :func:`pad_batch` standardises a batch and zero-pads it to its longest clip, returning
the true lengths the heads mask with; :class:`SequencesWithClipVectors` appends one vector
per clip to every frame.

Memory: by default every sequence is read once into one ``(total_frames, D)`` array in the
stored dtype plus ``offsets`` (the store's own layout), e.g. float16 SSL frames of 20,000 clips
x 110 frames x 768 dims take about 3.4 GB. When the set has a ``num_frames`` field and that
estimate exceeds ``max_memory_gb``, the sequences stay in the store and each batch is read
lazily (one HDF5 read per clip and epoch: slower, but bounded memory). Standardisation happens
per batch in float32, so the resident copy never doubles.

A clip without frames (missing row or zero frames) is fed one all-zero standardised frame,
i.e. the Train mean, so that every clip still gets a prediction.

Example:
    >>> import numpy as np
    >>> seqs = InMemorySequences.from_arrays([np.ones((3, 2)), 2 * np.ones((1, 2))])
    >>> mean, std = fit_frame_stats(seqs, [0, 1])
    >>> x, lengths = pad_batch(seqs, [1, 0], mean, std)
    >>> x.shape, lengths.tolist()
    ((2, 3, 2), [1, 3])
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from data.corpus import Corpus
from data.tasks import Task, target_array
from extract.store import FeatureStore, SetHeader, SetView
from heads.dataset import SequenceDataset, floor_std, split_clips
from heads.features import FeatureError, find_set

log = logging.getLogger(__name__)

READ_CHUNK = 512
"""Clips per store read when loading or computing statistics."""


class SequenceSet(Protocol):
    """Frame sequences of ``n`` clips, indexed by row (the experiment's row order)."""

    dim: int

    def __len__(self) -> int: ...

    def rows(self, rows: Sequence[int]) -> list[np.ndarray]:
        """Raw sequences of ``rows``, each (frames, dim); (0, dim) when a clip has none."""
        ...


class InMemorySequences:
    """All frames in one array: ``data`` (total_frames, D) and ``offsets`` (n + 1,).

    Args:
        data: frames of every clip, concatenated in row order.
        offsets: clip ``i`` is ``data[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        if data.ndim != 2:
            raise ValueError(f"data must be (total_frames, dim); got shape {data.shape}")
        if offsets.ndim != 1 or offsets[0] != 0 or offsets[-1] != len(data):
            raise ValueError("offsets must be (n + 1,), start at 0 and end at len(data)")
        self.data = data
        self.offsets = offsets.astype(np.int64)
        self.dim = int(data.shape[1])

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray | None], dim: int | None = None,
                    dtype: np.dtype | str | None = None) -> "InMemorySequences":
        """Concatenate per-clip arrays (None: a clip without frames).

        Raises:
            ValueError: arrays disagree on the dimension, or none gives it and ``dim`` is None.
        """
        dims = {int(np.prod(a.shape[1:])) for a in arrays if a is not None and a.ndim >= 1}
        if dim is None:
            if len(dims) != 1:
                raise ValueError(f"cannot tell the frame dimension; arrays have dims {sorted(dims)}")
            dim = dims.pop()
        present = [a for a in arrays if a is not None]
        dtype = np.dtype(dtype) if dtype is not None else (present[0].dtype if present else np.float32)
        lengths = np.array([0 if a is None else len(a) for a in arrays], dtype=np.int64)
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.empty((int(offsets[-1]), dim), dtype=dtype)
        for i, a in enumerate(arrays):
            if a is not None and len(a):
                data[offsets[i]:offsets[i + 1]] = a.reshape(len(a), dim)
        return cls(data, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        """True frames per clip, (n,)."""
        return np.diff(self.offsets)

    def rows(self, rows: Sequence[int]) -> list[np.ndarray]:
        return [self.data[self.offsets[r]:self.offsets[r + 1]] for r in rows]


class StoreSequences:
    """Sequences read lazily from the store, one batch at a time.

    Batches are read through one view of the set (:meth:`extract.store.FeatureStore.reader`:
    the latest record of every clip, built by reading every source's ids) made once per epoch,
    not once per batch: a new view is made when a row is asked for again, i.e. when the next
    pass over the rows begins, so a store that grows meanwhile is seen at the next epoch.

    Args:
        store: the workdir's store.
        key: feature set key.
        field: ragged field name.
        ids: clip ids in row order.
        dim: frame dimension.
    """

    def __init__(self, store: FeatureStore, key: str, field: str, ids: Sequence[str], dim: int) -> None:
        self.store, self.key, self.field = store, key, field
        self.ids = list(ids)
        self.dim = int(dim)
        self._view: SetView | None = None
        self._served = np.zeros(len(self.ids), dtype=bool)  # rows read through this view
        self.views_made = 0

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, rows: Sequence[int]) -> list[np.ndarray]:
        rows = [int(r) for r in rows]
        if self._view is None or self._served[rows].any():  # a new pass: a fresh view
            self.close()
            self._view = self.store.reader(self.key)
            self._served[:] = False
            self.views_made += 1
        self._served[rows] = True
        seqs = self._view.read_sequences(self.field, [self.ids[r] for r in rows])
        empty = np.zeros((0, self.dim), dtype=np.float32)
        return [empty if s is None else s.reshape(len(s), self.dim) for s in seqs]

    def close(self) -> None:
        """Close the view's files (the next :meth:`rows` opens a new one)."""
        if self._view is not None:
            self._view.close()
            self._view = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_view": None}  # open files do not travel


class SequencesWithClipVectors:
    """Sequences of ``base`` with one vector per clip appended to every frame: clip ``i``'s
    ``(T_i, D)`` frames become ``(T_i, D + k)``, each frame followed by ``vectors[i]``.

    The one place frames get per-clip inputs (e.g. the permutation study's auxiliary labels,
    "concatenated to the input Conformer features"); a head's windowing and pooling then see
    them on every frame. Frames come out in float32 (a float16 store would round the vectors).

    Args:
        base: the clips' frame sequences.
        vectors: ``(n, k)``, aligned to ``base``'s rows.

    Example:
        >>> base = InMemorySequences.from_arrays([np.ones((2, 1)), np.zeros((1, 1))])
        >>> seqs = SequencesWithClipVectors(base, np.array([[5.0], [7.0]]))
        >>> seqs.dim, [s.tolist() for s in seqs.rows([1, 0])]
        (2, [[[0.0, 7.0]], [[1.0, 5.0], [1.0, 5.0]]])
    """

    def __init__(self, base: SequenceSet, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(base):
            raise ValueError(f"vectors must be (n clips = {len(base)}, k); got shape {vectors.shape}")
        self.base, self.vectors = base, vectors
        self.dim = int(base.dim) + int(vectors.shape[1])

    def __len__(self) -> int:
        return len(self.base)

    def rows(self, rows: Sequence[int]) -> list[np.ndarray]:
        rows = [int(r) for r in rows]
        return [np.concatenate([s.astype(np.float32), np.broadcast_to(self.vectors[r], (len(s),
                                self.vectors.shape[1]))], axis=1)
                for r, s in zip(rows, self.base.rows(rows))]


def ragged_fields(header: SetHeader) -> list[str]:
    """Names of the ragged (frame sequence) fields of a set."""
    return sorted(name for name, spec in header.fields.items() if spec.ragged)


def choose_frames_field(headers: Sequence[SetHeader], frames_field: str | None,
                        layer: int | None) -> tuple[SetHeader, str]:
    """The set and ragged field a sequence head reads.

    ``frames_field`` given: the first set that has it. Otherwise ``frames_l<layer>`` when a
    layer is given and stored, else the only ragged field of the first set that has one.

    Raises:
        FeatureError: no set has the field, or the choice is ambiguous (lists what is stored
            and how to store frames).
    """
    stored = {h.key: ragged_fields(h) for h in headers}
    hint = ("Frame sequences are stored by extract with --frames-layers (SSL), --level lld "
            "(openSMILE) or a logmel:N spec")
    if frames_field is not None:
        for h in headers:
            if frames_field in stored[h.key]:
                return h, frames_field
        raise FeatureError(f"no requested feature set has the frame field {frames_field!r}; ragged "
                           f"fields stored: {stored}. {hint}.")
    if layer is not None:
        for h in headers:
            if f"frames_l{layer}" in stored[h.key]:
                return h, f"frames_l{layer}"
    for h in headers:
        if len(stored[h.key]) == 1:
            return h, stored[h.key][0]
        if len(stored[h.key]) > 1:
            raise FeatureError(f"set {h.key} has several frame fields {stored[h.key]}; choose one "
                               f"with --frames-field")
    raise FeatureError(f"a sequence head needs frame sequences, but the requested sets have none "
                       f"(ragged fields: {stored}). {hint}.")


def load_sequences(store: FeatureStore, features: Sequence[str], ids: Sequence[str], *,
                   frames_field: str | None = None, layer: int | None = None,
                   max_memory_gb: float = 8.0) -> tuple[SequenceSet, np.ndarray, dict]:
    """Frame sequences of ``ids`` from the first requested set holding the frame field.

    Args:
        store: the workdir's store.
        features: feature specs or keys, as in the experiment config.
        ids: clip ids, in row order.
        frames_field: ragged field (e.g. ``frames_l12``); None: see :func:`choose_frames_field`.
        layer: SSL layer that picks ``frames_l<layer>`` when ``frames_field`` is None.
        max_memory_gb: above this estimated size the sequences are streamed from the store.

    Returns:
        ``(sequences, present (n,) bool, description dict)``; ``present`` is False for clips
        with no stored frames.

    Raises:
        FeatureError: a set is not in the store or holds no suitable frame field.
    """
    headers = [find_set(store, f, lambda h: choose_frames_field([h], frames_field, layer))
               for f in features]
    header, field = choose_frames_field(headers, frames_field, layer)
    spec = header.fields[field]
    dim = int(np.prod(spec.shape)) if spec.shape else 1
    desc = {"key": header.key, "spec": header.spec, "field": field,
            "layer": spec.attrs.get("layer"), "dim": dim}
    estimate = None
    if "num_frames" in header.fields and not header.fields["num_frames"].ragged:
        counts, ok = store.read(header.key, "num_frames", ids)
        estimate = float(counts[ok].sum()) * dim * np.dtype(spec.dtype).itemsize / 2**30
    if estimate is not None and estimate > max_memory_gb:
        log.info("%s/%s: about %.1f GB of frames > %.1f GB: streaming batches from the store",
                 header.key, field, estimate, max_memory_gb)
        present = ok & (counts > 0)
        return StoreSequences(store, header.key, field, ids, dim), present, desc
    arrays: list[np.ndarray | None] = []
    for lo in range(0, len(ids), READ_CHUNK):
        arrays += store.read_sequences(header.key, field, list(ids[lo:lo + READ_CHUNK]))
    present = np.array([a is not None and len(a) > 0 for a in arrays], dtype=bool)
    seqs = InMemorySequences.from_arrays(arrays, dim=dim, dtype=spec.dtype)
    log.info("%s/%s: %d clips, %d frames x %d dims in memory (%.2f GB)", header.key, field,
             len(ids), len(seqs.data), dim, seqs.data.nbytes / 2**30)
    return seqs, present, desc


def fit_frame_stats(seqs: SequenceSet, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation over every frame of ``rows`` (Train).

    Accumulated in float64 over chunks of clips (population std). A dimension with std below
    :data:`heads.dataset.STD_FLOOR` gets std 1 (it is only centred; :func:`heads.dataset.floor_std`).

    Returns:
        ``(mean (D,), std (D,))`` float32.
    """
    total = np.zeros(seqs.dim, dtype=np.float64)
    total_sq = np.zeros(seqs.dim, dtype=np.float64)
    count = 0
    rows = list(rows)
    for lo in range(0, len(rows), READ_CHUNK):
        for s in seqs.rows(rows[lo:lo + READ_CHUNK]):
            if len(s):
                s64 = s.astype(np.float64)
                total += s64.sum(axis=0)
                total_sq += (s64 * s64).sum(axis=0)
                count += len(s)
    if count == 0:
        return np.zeros(seqs.dim, np.float32), np.ones(seqs.dim, np.float32)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return mean.astype(np.float32), floor_std(std).astype(np.float32)


def pad_batch(seqs: SequenceSet, rows: Sequence[int], mean: np.ndarray, std: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Standardised, zero-padded batch.

    Returns:
        ``(x (B, T_max, D) float32, lengths (B,) int64)``; a clip without frames has length 1
        and one zero frame.
    """
    raw = seqs.rows(rows)
    lengths = np.array([max(1, len(s)) for s in raw], dtype=np.int64)  # (B,)
    x = np.zeros((len(raw), int(lengths.max(initial=1)), seqs.dim), dtype=np.float32)  # (B, T, D)
    for b, s in enumerate(raw):
        if len(s):
            x[b, :len(s)] = (s.astype(np.float32) - mean) / std
    return x, lengths



def build_sequence_dataset(store: FeatureStore, corpus: Corpus, tasks: Sequence[Task],
                           features: Sequence[str], *, layer: int | None,
                           frames_field: str | None, max_memory_gb: float) -> SequenceDataset:
    """The dataset of a sequence head: the clips with stored frames, ``X`` empty.

    Sequence heads need no vector field (log-mel and openSMILE LLD sets have none).

    Raises:
        FeatureError: the set or frame field is missing (says what to extract).
    """
    clips = split_clips(corpus)
    all_ids = list(clips.index)
    seqs, present, desc = load_sequences(store, features, all_ids, frames_field=frames_field,
                                         layer=layer, max_memory_gb=max_memory_gb)
    missing = int((~present).sum())
    if missing:
        log.warning("%d clip(s) have no stored frames (failed or not extracted) and are left out",
                    missing)
        keep = np.flatnonzero(present)
        if isinstance(seqs, InMemorySequences):
            seqs = InMemorySequences.from_arrays(seqs.rows(keep), dim=seqs.dim, dtype=seqs.data.dtype)
        else:
            assert isinstance(seqs, StoreSequences)
            seqs = StoreSequences(seqs.store, seqs.key, seqs.field, [all_ids[i] for i in keep], seqs.dim)
    ids = [c for c, ok in zip(all_ids, present) if ok]
    split = clips.loc[ids, "split"].to_numpy()
    truths = {t.name: {tg.name: target_array(tg, corpus.labels, ids) for tg in t.targets}
              for t in tasks}
    return SequenceDataset(ids, split, np.zeros((len(ids), 0), np.float32), list(tasks), truths,
                           [desc], missing, sequences=seqs)

__all__ = ["SequenceSet", "InMemorySequences", "StoreSequences", "SequencesWithClipVectors",
           "ragged_fields",
           "choose_frames_field", "load_sequences", "fit_frame_stats", "pad_batch",
           "build_sequence_dataset"]
