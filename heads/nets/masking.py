"""Masking of padded frame sequences: which frames are true, padding zeroed, pooling over
true frames only (the statistics themselves are :func:`extract.pooling.masked_pool`'s)."""
from __future__ import annotations

import torch
from torch import Tensor

from extract.pooling import POOLINGS, masked_pool

def length_mask(lengths: Tensor, frames: int) -> Tensor:
    """``mask[b, t] = t < lengths[b]``, (batch, frames) bool, on ``lengths``' device."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def check_sequence(x: Tensor, lengths: Tensor, input_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Validate ``(x, lengths)``; return x with padding zeroed, lengths (long), mask (B, T)."""
    if x.dim() != 3 or x.shape[2] != input_dim:
        raise ValueError(f"x must be (batch, frames, {input_dim}); got {tuple(x.shape)}")
    lengths = torch.as_tensor(lengths, device=x.device).long()
    if lengths.shape != (x.shape[0],):
        raise ValueError(f"lengths must be ({x.shape[0]},); got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
        raise ValueError(f"lengths must be in [1, frames={x.shape[1]}]; got {lengths.tolist()}")
    mask = length_mask(lengths, x.shape[1])  # (B, T)
    # Zero the padding so that garbage (even NaN/inf) past a clip's end cannot leak in.
    return x.masked_fill(~mask[..., None], 0.0), lengths, mask




def window_means(x: Tensor, lengths: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Non-overlapping windows of ``width`` true frames, each replaced by its mean.

    A clip of ``n`` true frames gives ``ceil(n / width)`` windows; the last one averages the
    frames it has. Padding (zero in, as :func:`check_sequence` leaves it) stays zero out.

    Args:
        x: (B, T, D) with padding zeroed.
        lengths: (B,) long, in [1, T].
        width: frames per window (>= 1).

    Returns:
        ((B, ceil(T / width), D), window counts (B,) long).

    Example:
        >>> x = torch.tensor([[[1.0], [3.0], [5.0]]])
        >>> window_means(x, torch.tensor([3]), 2)[0].flatten().tolist()
        [2.0, 5.0]
    """
    if width < 1:
        raise ValueError(f"window width must be >= 1 frame; got {width}")
    b, t, d = x.shape
    n = -(-t // width)
    xw = torch.nn.functional.pad(x, (0, 0, 0, n * width - t)).view(b, n, width, d).sum(dim=2)
    starts = torch.arange(n, device=lengths.device)[None, :] * width  # (1, n)
    counts = (lengths[:, None] - starts).clamp(0, width).to(x.dtype)  # (B, n)
    xw = xw / counts.clamp(min=1)[..., None]
    return xw, -(-lengths // width)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the true frames: x (B, T, D), mask (B, T) -> (B, D).

    The true frames of a row are a prefix (``mask = length_mask(lengths, T)``), so this is
    :func:`extract.pooling.masked_pool`'s mean with ``lengths = mask.sum(1)``.
    """
    return masked_pool(x, mask.sum(dim=1), ("mean",))["mean"]


def pool_frames(y: Tensor, lengths: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """Pool per-frame values over true frames only: y (B, T, S) -> (B, S).

    Args:
        y: per-frame values.
        lengths: true frames per row, (B,) long, in [1, T].
        mask: ``length_mask(lengths, T)`` (kept for callers; the lengths define the frames).
        pooling: a name of :data:`extract.pooling.POOLINGS`.

    Raises:
        ValueError: unknown pooling (lists the valid ones).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
    return masked_pool(y, lengths, (pooling,))[pooling]


__all__ = ["length_mask", "check_sequence", "masked_mean", "pool_frames", "window_means"]
