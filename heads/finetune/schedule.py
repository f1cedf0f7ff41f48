"""Stage 2's learning-rate schedule and gradient accumulation, as numbers of optimiser steps.

An optimiser step follows ``grad_accum`` micro-batches of ``batch_size`` clips (the last group of
an epoch may be shorter), so an epoch of ``b`` micro-batches has ``ceil(b / grad_accum)`` steps.
Each micro-batch's loss is multiplied by its share of the group's clips
(:func:`micro_weights`): summed over the group, the gradient is that of the mean loss over all
the group's clips, i.e. one batch of ``batch_size * grad_accum`` clips (exactly so for losses
that are means over clips; a class-weighted cross-entropy is a weighted mean, and then the
group's gradient is the clip-weighted mean of the micro-batch means).

Warm-up is linear over ``warmup_steps`` steps: step ``s < w`` runs at ``(s + 1) / w`` of the
peak rate (the project's convention, :func:`heads.training.loop.lr_factor`: no step is spent at
a rate of 0). Given as a ratio of all steps (paper 004: "warm-up ratio 0.1, linear warm-up"),
``w = ceil(ratio * total_steps)``, the rounding of transformers' ``TrainingArguments.warmup_ratio``.
After it, the decay:

* ``cosine`` (seed 000; the default): ``0.5 (1 + cos(pi p))``, ``p = (s - w) / (T - w)``;
* ``linear``: ``(T - s) / (T - w)``, from 1 at the end of warm-up towards 0 at step ``T``;
* ``constant``: 1.

Example:
    >>> [round(lr_multiplier(s, total_steps=10, warmup_steps=2, decay="linear"), 3) for s in range(4)]
    [0.5, 1.0, 1.0, 0.875]
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from heads.config import DECAYS  # what follows the warm-up (module docstring)
from heads.training.loop import lr_factor


def steps_per_epoch(micro_batches: int, grad_accum: int) -> int:
    """Optimiser steps of an epoch of ``micro_batches`` micro-batches.

    Example:
        >>> steps_per_epoch(10, 4)
        3
    """
    if grad_accum < 1:
        raise ValueError(f"grad_accum must be >= 1; got {grad_accum}")
    return math.ceil(micro_batches / grad_accum)


def warmup_steps_of(total_steps: int, *, ratio: float | None, epochs: float,
                    steps_per_epoch: int) -> int:
    """Warm-up steps: ``ceil(ratio * total_steps)`` when a ratio is given, else
    ``round(epochs * steps_per_epoch)`` (seed 000's one warm-up epoch).

    Example:
        >>> warmup_steps_of(95, ratio=0.1, epochs=1.0, steps_per_epoch=19)
        10
    """
    if ratio is not None:
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1); got {ratio}")
        # a tolerance: 0.1 * 100 is 10.000000000000002 in floating point, and 10 steps are meant
        return min(total_steps, math.ceil(ratio * total_steps - 1e-9))
    return int(round(epochs * steps_per_epoch))


def lr_multiplier(step: int, *, total_steps: int, warmup_steps: int, decay: str) -> float:
    """The learning rate of optimiser step ``step`` (0-based) as a fraction of the peak.

    Raises:
        ValueError: ``decay`` is not one of :data:`DECAYS`.
    """
    if decay not in DECAYS:
        raise ValueError(f"schedule must be one of {DECAYS}; got {decay!r}")
    if decay == "linear":
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return lr_factor(step, total_steps=total_steps, warmup_steps=warmup_steps,
                     schedule="cosine" if decay == "cosine" else "none")


def micro_weights(sizes: Sequence[int]) -> list[float]:
    """Each micro-batch's share of its group's clips: the factor its mean loss is scaled by.

    Example:
        >>> micro_weights([4, 4, 2])
        [0.4, 0.4, 0.2]
    """
    total = sum(sizes)
    if total <= 0:
        raise ValueError(f"a group of micro-batches needs clips; got sizes {list(sizes)}")
    return [n / total for n in sizes]


def accumulation_groups(n_micro: int, grad_accum: int) -> list[range]:
    """Micro-batch indices of each optimiser step, in order.

    Example:
        >>> [list(g) for g in accumulation_groups(5, 2)]
        [[0, 1], [2, 3], [4]]
    """
    return [range(s, min(s + grad_accum, n_micro)) for s in range(0, n_micro, grad_accum)]


__all__ = ["DECAYS", "accumulation_groups", "lr_multiplier", "micro_weights", "steps_per_epoch",
           "warmup_steps_of"]
