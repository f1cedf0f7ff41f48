"""Clips for fine-tuning: decoded ahead of the model, normalised per clip, batched by length."""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from data.audio import load_audio
from extract.base import SAMPLE_RATE
from extract.ssl import NORM_EPS

log = logging.getLogger(__name__)

EVAL_MAX_STRETCH = 1.25
"""An eval batch holds clips up to this many times its shortest: models trained without an
attention mask see the padding, so Val scores stay close to each clip run alone."""
BUCKET_BATCHES = 20
"""Training batches are cut from length-sorted runs of this many batches of a shuffled order."""


class ClipAudio:
    """Decoded clips on demand (threads ahead of the model), kept in memory when they fit; a
    segment clip (``spans``) is read as its span only (:func:`data.audio.load_audio` seeks)."""

    def __init__(self, paths: dict[str, str], *, workers: int, cache: bool,
                 spans: dict[str, tuple[float | None, float | None]] | None = None) -> None:
        self.paths, self.workers, self.cache = paths, workers, cache
        self.spans = spans or {}  # clip id -> (start, end) seconds of a segment
        self._cache: dict[str, np.ndarray] = {}
        self.failed: dict[str, str] = {}

    def _one(self, cid: str) -> np.ndarray | None:
        if cid in self._cache:
            return self._cache[cid]
        if cid in self.failed:
            return None
        try:
            start, end = self.spans.get(cid, (None, None))
            x = load_audio(self.paths[cid], sample_rate=SAMPLE_RATE, start=start, end=end)
        except Exception as exc:  # noqa: BLE001 - one bad clip never sinks the run
            self.failed[cid] = str(exc)
            log.warning("clip %s left out: %s", cid, exc)
            return None
        if self.cache:
            self._cache[cid] = x
        return x

    def batches(self, batches: Sequence[Sequence[str]]) -> Iterator[list[np.ndarray | None]]:
        """Decoded clips of each batch in order, decoding up to two batches ahead."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            ahead = 2
            futures = [pool.submit(lambda b: [self._one(c) for c in b], b) for b in batches[:ahead]]
            for i in range(len(batches)):
                if i + ahead < len(batches):
                    futures.append(pool.submit(lambda b: [self._one(c) for c in b], batches[i + ahead]))
                yield futures[i].result()
                futures[i] = None  # type: ignore[call-overload]


def normalise_clip(x: np.ndarray, do_normalize: bool, min_samples: int) -> np.ndarray:
    """Per-clip zero mean / unit variance (as Wav2Vec2FeatureExtractor) when the checkpoint
    asks for it, then zero-padded to one receptive field (as the extractor does)."""
    x64 = x.astype(np.float64)
    if do_normalize:
        x64 = (x64 - x64.mean()) / np.sqrt(x64.var() + NORM_EPS)
    x32 = x64.astype(np.float32)
    if x32.size < min_samples:
        x32 = np.pad(x32, (0, min_samples - x32.size))
    return x32


def eval_plan(lengths: Sequence[int], *, max_samples: float, max_clips: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of bounded padded audio and stretch."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        n = lengths[i]
        cur = batches[-1] if batches else None
        if (cur is not None and len(cur) < max_clips and (len(cur) + 1) * n <= max_samples
                and n <= EVAL_MAX_STRETCH * lengths[cur[0]]):
            cur.append(i)
        else:
            batches.append([i])
    return batches


def train_plan(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffled epoch cut into batches of similar lengths (little padding), in random order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for c in range(0, len(order), chunk):
        part = order[c:c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]

