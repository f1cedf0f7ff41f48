"""Rows, labels and Train-standardised features of one probe study."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from data.tasks import Task, target_array
from extract.store import FeatureStore, SetHeader
from heads.dataset import floor_std, labelled, standardise  # noqa: F401  (re-exported)
from heads.features import FeatureError

log = logging.getLogger(__name__)


@dataclass
class ProbeData:
    """Clips with features and a split, and the labels of the task's targets.

    Attributes:
        ids: clip ids (rows).
        split: (n,) ``Train`` / ``Val`` / ``Test``.
        task: the resolved task.
        truths: target name -> labels, regression (n, k) float with NaN for missing,
            classification (n,) int codes with -1 for missing.
        excluded_missing_features: clips with a split but no stored row (failed / not
            extracted), left out.
    """

    ids: list[str]
    split: np.ndarray
    task: Task
    truths: dict[str, np.ndarray]
    excluded_missing_features: int = 0

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def load_probe_data(store: FeatureStore, header: SetHeader, corpus: Any, task: Task
                    ) -> ProbeData:
    """Clips of ``corpus`` with a split and a stored row in the set, and their labels.

    Raises:
        ValueError: no Train or no Val clip has a stored row.
    """
    clips = corpus.clips[corpus.clips["split"].isin(["Train", "Val", "Test"])]
    done, _ = store.status(header.key)
    ids = [c for c in clips.index if c in done]
    missing = len(clips) - len(ids)
    if missing:
        log.warning("%d clip(s) have no stored row in %s (failed or not extracted); left out",
                    missing, header.key)
    split = clips.loc[ids, "split"].to_numpy() if ids else np.array([], dtype=object)
    for s in ("Train", "Val"):
        if not (split == s).any():
            raise ValueError(f"no {s} clip has features in {header.key}; a probe fits on Train "
                             f"and selects on Val")
    truths = {tg.name: target_array(tg, corpus.labels, ids) for tg in task.targets}
    return ProbeData(ids, split, task, truths, missing)


SPEAKER_TASK = "speaker"
SPEAKER_SPLIT_RULE = ("within each speaker, its clips in id order cycle through Train, Train, "
                      "Train, Val, Test (3 : 1 : 1); the corpus's own split is not used, since a "
                      "speaker-independent split has no Val or Test clip of a Train speaker")


def within_group_split(groups: Sequence[str]) -> np.ndarray:
    """Split by position within each group: 0, 1, 2 -> Train, 3 -> Val, 4 -> Test, repeating.

    Example:
        >>> within_group_split(["a", "a", "b", "a", "a", "a", "b"]).tolist()
        ['Train', 'Train', 'Train', 'Train', 'Val', 'Test', 'Train']
    """
    cycle = np.array(["Train", "Train", "Train", "Val", "Test"], dtype=object)
    seen: dict[str, int] = {}
    out = np.empty(len(groups), dtype=object)
    for i, g in enumerate(groups):
        k = seen.get(g, 0)
        seen[g] = k + 1
        out[i] = cycle[k % len(cycle)]
    return out


def speaker_labels(corpus: Any) -> Any:
    """The corpus's label table with a ``speaker`` column: its own, or the clips' group
    (speaker / subject) where it has none.

    Raises:
        ValueError: neither a speaker column nor any group.
    """
    labels = corpus.labels
    if SPEAKER_TASK in labels.columns:
        return labels
    groups = corpus.clips["group"].replace("", np.nan).dropna()
    if groups.empty:
        raise ValueError(f"probe --task speaker: the {corpus.layout} corpus at {corpus.root} has no "
                         f"speaker column and no speaker groups (a csv corpus names them with "
                         f"extract --group-column COL)")
    return labels.reindex(labels.index.union(groups.index)).assign(speaker=groups)


def load_speaker_data(store: FeatureStore, header: SetHeader, corpus: Any, task: Task) -> ProbeData:
    """Clips with a stored row and a speaker, split within each speaker
    (:func:`within_group_split`, in id order).

    Raises:
        ValueError: no Val clip (every speaker has fewer than four clips).
    """
    labels = speaker_labels(corpus)
    done, _ = store.status(header.key)
    target = task.targets[0]
    stored = [c for c in corpus.clips.index if c in done]
    codes = target_array(target, labels, stored)
    ids = sorted(c for c, y in zip(stored, codes) if y >= 0)
    truths = {target.name: target_array(target, labels, ids)}
    split = within_group_split([labels.loc[c, SPEAKER_TASK] for c in ids])
    if not (split == "Val").any():
        raise ValueError(f"probe --task speaker: no speaker has 4 clips with features in "
                         f"{header.key}, so there is no Val clip ({SPEAKER_SPLIT_RULE})")
    return ProbeData(ids, split, task, truths, len(corpus.clips) - len(ids))


def layer_fields(header: SetHeader, poolings: Sequence[str] = ()
                 ) -> tuple[list[int], dict[str, str]]:
    """The stored layers and the field of each pooling (default: every stored pooling).

    Raises:
        FeatureError: a pooling is not stored, the set has no layered fields, or poolings
            were stored with different layers.
    """
    stored = sorted(k[len("pooled_"):] for k, f in header.fields.items()
                    if k.startswith("pooled_") and "layers" in f.attrs)
    poolings = list(poolings) or stored
    if not stored:
        raise FeatureError(f"set {header.key} ({header.spec}) has no pooled SSL layers (fields: "
                           f"{sorted(header.fields)}); probing needs an ssl: feature set")
    out, layers = {}, None
    for p in poolings:
        name = f"pooled_{p}"
        if p not in stored:
            raise FeatureError(f"pooling {p!r} is not stored in {header.key}; stored poolings: "
                               f"{stored}. Poolings are chosen at extraction (--poolings).")
        these = list(header.fields[name].attrs["layers"])
        if layers is not None and these != layers:
            raise FeatureError(f"poolings of {header.key} hold different layers ({layers} vs "
                               f"{these}); probe them separately")
        layers, out[p] = these, name
    assert layers is not None
    return layers, out


def standardise_layers(X: np.ndarray, train_rows: np.ndarray, *, block: int = 2048
                       ) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """Standardise (n, L, d) features per layer and dimension on Train, as float16 in place.

    Returns:
        (float16 array, bad rows mask): non-finite entries become 0, their rows are flagged.
    """
    n = X.shape[0]
    bad = np.zeros(n, dtype=bool)
    is_train = np.zeros(n, dtype=bool)
    is_train[train_rows] = True
    s1 = np.zeros(X.shape[1:])
    s2 = np.zeros(X.shape[1:])
    cnt = 0
    for lo in range(0, n, block):
        blk = X[lo:lo + block].astype(np.float64)
        fin = np.isfinite(blk).reshape(len(blk), -1).all(axis=1)
        bad[lo:lo + block] = ~fin
        sel = np.flatnonzero(is_train[lo:lo + block] & fin)
        s1 += blk[sel].sum(axis=0)
        s2 += (blk[sel] ** 2).sum(axis=0)
        cnt += len(sel)
    mean = s1 / max(cnt, 1)
    std = floor_std(np.sqrt(np.maximum(s2 / max(cnt, 1) - mean ** 2, 0.0)))
    out = X if X.dtype == np.float16 else np.empty(X.shape, dtype=np.float16)
    for lo in range(0, n, block):
        blk = (X[lo:lo + block].astype(np.float64) - mean) / std
        out[lo:lo + block] = np.where(np.isfinite(blk), blk, 0.0).astype(np.float16)
    return out, bad
