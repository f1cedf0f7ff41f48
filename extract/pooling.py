"""Pooling of frame sequences over the *true* frames of each clip.

Two forms of the same statistics:

* :func:`masked_pool` pools a zero-padded batch ``(batch, frames, dim)`` given each clip's true
  frame count; padding never enters a statistic.
* :class:`PoolingAccumulator` pools one clip whose frames arrive in time-ordered chunks (a
  clip processed window by window); it gives the same values as :func:`masked_pool` on the
  concatenated frames.

The standard deviation is the *population* one (divisor ``n``, ``ddof=0``): it is defined for a
clip with a single frame (it is 0 there) and matches ``numpy.std``'s default.
"""
from __future__ import annotations

from typing import Sequence

import torch

POOLINGS: tuple[str, ...] = ("mean", "last", "first", "max", "std")
"""Every pooling, in canonical order."""


def validate_poolings(poolings: Sequence[str]) -> tuple[str, ...]:
    """Check pooling names and return them de-duplicated in canonical order.

    Args:
        poolings: names from :data:`POOLINGS`.

    Returns:
        The names, each once, ordered as in :data:`POOLINGS`.

    Raises:
        ValueError: a name is unknown, or none is given.

    Example:
        >>> validate_poolings(["max", "mean", "max"])
        ('mean', 'max')
    """
    unknown = [p for p in poolings if p not in POOLINGS]
    if unknown:
        raise ValueError(
            f"unknown pooling {unknown[0]!r}; valid poolings: {', '.join(POOLINGS)}"
        )
    if not poolings:
        raise ValueError(f"poolings is empty; choose from {', '.join(POOLINGS)}")
    return tuple(p for p in POOLINGS if p in poolings)


def masked_pool(
    hidden: torch.Tensor, lengths: torch.Tensor, poolings: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Pool a padded batch over each clip's true frames.

    Args:
        hidden: ``(batch, frames, dim)`` frame sequences; frames at or after a clip's length are
            padding and may hold anything (finite or not).
        lengths: ``(batch,)`` integer true frame counts, each at least 1.
        poolings: names from :data:`POOLINGS`.

    Returns:
        One ``(batch, dim)`` tensor per pooling, in ``hidden``'s dtype.

    Example:
        >>> h = torch.tensor([[[1.0], [3.0], [99.0]]])
        >>> {k: v.tolist() for k, v in masked_pool(h, torch.tensor([2]), ["mean", "last"]).items()}
        {'mean': [[2.0]], 'last': [[3.0]]}
    """
    batch, frames, _ = hidden.shape
    lengths = lengths.to(device=hidden.device, dtype=torch.long)
    mask = torch.arange(frames, device=hidden.device)[None, :] < lengths[:, None]  # (B, T)
    mask3 = mask.unsqueeze(-1)  # (B, T, 1)
    count = lengths.to(hidden.dtype).unsqueeze(-1)  # (B, 1)
    out: dict[str, torch.Tensor] = {}
    mean = None
    if "mean" in poolings or "std" in poolings:
        # torch.where (not a multiply) so that non-finite padding cannot leak as nan.
        mean = torch.where(mask3, hidden, 0.0).sum(dim=1) / count  # (B, D)
    for pooling in poolings:
        if pooling == "mean":
            out[pooling] = mean
        elif pooling == "last":
            out[pooling] = hidden[torch.arange(batch, device=hidden.device), lengths - 1]
        elif pooling == "first":
            out[pooling] = hidden[:, 0]
        elif pooling == "max":
            out[pooling] = hidden.masked_fill(~mask3, float("-inf")).amax(dim=1)
        elif pooling == "std":
            dev = torch.where(mask3, hidden - mean.unsqueeze(1), 0.0)  # (B, T, D)
            out[pooling] = (dev.square().sum(dim=1) / count).sqrt()
        else:
            raise ValueError(f"unknown pooling {pooling!r}; valid poolings: {', '.join(POOLINGS)}")
    return out


class PoolingAccumulator:
    """Pool one clip whose frames arrive in time-ordered chunks.

    Means and variances are merged with Chan et al.'s pairwise update in float64, so the result
    does not depend on how the clip was cut.

    Args:
        poolings: names from :data:`POOLINGS`.

    Example:
        >>> acc = PoolingAccumulator(["mean", "std", "last"])
        >>> acc.update(torch.tensor([[1.0], [2.0]]))
        >>> acc.update(torch.tensor([[3.0]]))
        >>> {k: round(float(v), 4) for k, v in acc.result().items()}
        {'mean': 2.0, 'std': 0.8165, 'last': 3.0}
    """

    def __init__(self, poolings: Sequence[str]) -> None:
        self.poolings = tuple(poolings)
        self.count = 0
        self._mean: torch.Tensor | None = None  # (*dims) float64
        self._m2: torch.Tensor | None = None  # (*dims) float64, sum of squared deviations
        self._max: torch.Tensor | None = None
        self._first: torch.Tensor | None = None
        self._last: torch.Tensor | None = None

    def update(self, frames: torch.Tensor) -> None:
        """Add the next chunk of frames.

        Args:
            frames: ``(frames, *dims)`` with at least one frame, following the previous chunk.
        """
        n_b = frames.shape[0]
        if n_b == 0:
            return
        x = frames.to(torch.float64)
        mean_b = x.mean(dim=0)
        m2_b = (x - mean_b).square().sum(dim=0)
        if self._mean is None:
            self._mean, self._m2 = mean_b, m2_b
            self._first = frames[0]
            self._max = frames.amax(dim=0)
        else:
            n = self.count + n_b
            delta = mean_b - self._mean
            self._mean = self._mean + delta * (n_b / n)
            self._m2 = self._m2 + m2_b + delta.square() * (self.count * n_b / n)
            self._max = torch.maximum(self._max, frames.amax(dim=0))
        self._last = frames[-1]
        self.count += n_b

    def result(self) -> dict[str, torch.Tensor]:
        """The pooled statistics, each ``(*dims)`` in the dtype of the frames.

        Raises:
            ValueError: no frame was added.
        """
        if self._mean is None:
            raise ValueError("cannot pool a clip with no frames")
        dtype = self._last.dtype
        values = {
            "mean": self._mean.to(dtype),
            "std": (self._m2 / self.count).sqrt().to(dtype),
            "max": self._max,
            "first": self._first,
            "last": self._last,
        }
        return {p: values[p] for p in self.poolings}
