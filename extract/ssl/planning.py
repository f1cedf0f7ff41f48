"""Which clips run together: the corpus-wide batch plan and the groups inside one batch.

Every function is pure: the plan depends only on the lengths (ties broken by index), so a rerun
after a kill forms the same batches and stores the same values.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from extract.base import SAMPLE_RATE
from extract.ssl.config import FRONTEND_BATCH_SECONDS, FRONTEND_MAX_STRETCH, MAX_BATCH_CLIPS


def plan_batches(
    num_samples: Sequence[int], *, batch_seconds: float, min_samples: int,
    max_clips: int = MAX_BATCH_CLIPS,
) -> list[list[int]]:
    """Sort clips by length; cut batches of at most ``batch_seconds`` padded audio.

    A batch holds at most ``max_clips`` clips; a clip longer than the budget is a batch of its
    own. Lengths under ``min_samples`` count as ``min_samples`` (they are padded to it).

    Example:
        >>> plan_batches([16_000, 8_000, 48_000], batch_seconds=2.0, min_samples=400)
        [[1, 0], [2]]
    """
    budget = batch_seconds * SAMPLE_RATE
    order = sorted(range(len(num_samples)), key=lambda i: (max(int(num_samples[i]), min_samples), i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        length = max(int(num_samples[i]), min_samples)  # the longest so far: order is ascending
        if current and ((len(current) + 1) * length > budget or len(current) >= max_clips):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def frontend_groups(
    lengths: Mapping[int, int], *, budget_seconds: float = FRONTEND_BATCH_SECONDS,
    max_stretch: float = FRONTEND_MAX_STRETCH,
) -> list[list[int]]:
    """Groups of clips for the batched front end, inside one batch.

    Clips sorted by length go together while the group's padded audio stays within
    ``budget_seconds`` and its longest clip is at most ``max_stretch`` times its shortest
    (padding wastes compute, and on the CPU cache).

    Args:
        lengths: clip key -> prepared samples.

    Example:
        >>> frontend_groups({0: 1000, 1: 1400, 2: 1600, 3: 900})
        [[3, 0], [1, 2]]
    """
    budget = budget_seconds * SAMPLE_RATE
    groups: list[list[int]] = []
    for i in sorted(lengths, key=lambda i: (lengths[i], i)):  # ascending: the clip added is the longest
        n = lengths[i]
        if groups and (len(groups[-1]) + 1) * n <= budget and n <= max_stretch * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def equal_length_groups(lengths: Mapping[int, int], *, max_clips: int = MAX_BATCH_CLIPS) -> list[list[int]]:
    """Clips of equal length together, at most ``max_clips`` per group (no padding at all).

    Example:
        >>> equal_length_groups({0: 5, 1: 7, 2: 5}, max_clips=64)
        [[0, 2], [1]]
    """
    by_length: dict[int, list[int]] = {}
    for i, n in lengths.items():
        by_length.setdefault(n, []).append(i)
    return [group[s:s + max_clips] for group in by_length.values() for s in range(0, len(group), max_clips)]
