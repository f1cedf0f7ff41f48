"""Gradient reversal and the speaker-adversary head of seed 004 (Ganin et al. 2016, ref. [13]).

The gradient-reversal layer is the identity going forward and multiplies the gradient by
``-beta`` going back (:func:`grad_reverse`). The paper's joint loss is
``L = L_SER + alpha L_ASR + beta L_sid`` (004, III.D) with the speaker classifier on the
mean-pooled output behind the reversal layer (III.C); its ablation "Forward" trains the same
classifier without the reversal (IV.D, Table III).

:class:`AdversaryHead` puts ``beta`` in one of two equivalent-for-the-encoder places:

* ``beta_at="loss"`` (default, the paper's equation): reversal with coefficient 1, and
  :meth:`AdversaryHead.loss` returns ``beta * CE``. The classifier learns at rate ``beta``.
* ``beta_at="grl"`` (Ganin's lambda): reversal with coefficient ``beta``, loss ``CE``. The
  classifier learns at full rate even at ``beta = 0``, where it is then a probe of how much
  speaker identity the frozen-to-it representation holds.

Either way the encoder below the head receives ``-beta`` times (``mode="reverse"``) or
``+beta`` times (``mode="forward"``) the gradient of the speaker cross-entropy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heads.config import ADVERSARY_MODES  # reverse: gradient reversal; forward: the ablation
from heads.config import BETA_AT  # where beta scales: the loss or the reversal layer

IGNORE_INDEX = -1
"""Speaker target of a clip without a speaker label (skipped by the loss)."""


class _GradScale(torch.autograd.Function):
    """Identity forward; ``factor * grad`` backward (gradient reversal: ``factor = -beta``)."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return ctx.factor * grad, None


def grad_reverse(x: Tensor, beta: float = 1.0) -> Tensor:
    """Gradient reversal: returns ``x``; the gradient flowing back through it is ``-beta`` times
    the incoming one.

    Args:
        x: any tensor.
        beta: the reversal coefficient, >= 0.

    Raises:
        ValueError: ``beta`` is negative or not finite.

    Example:
        >>> x = torch.ones(3, requires_grad=True)
        >>> grad_reverse(x, 0.5).sum().backward()
        >>> x.grad.tolist()
        [-0.5, -0.5, -0.5]
    """
    beta = float(beta)
    if not beta >= 0.0 or beta == float("inf"):
        raise ValueError(f"beta must be a finite number >= 0, got {beta}")
    return _GradScale.apply(x, -beta)


def masked_mean_pool(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Mean over true frames: (B, T, D) with ``lengths`` (B,) -> (B, D); (B, D) passes through.

    Frames at or past a row's length never influence its mean.

    Raises:
        ValueError: wrong ranks, or lengths outside [1, T].
    """
    if x.dim() == 2:
        if lengths is not None:
            raise ValueError("lengths go with frame sequences (B, T, D); got pooled (B, D) input")
        return x
    if x.dim() != 3:
        raise ValueError(f"input must be (batch, dim) or (batch, frames, dim), got {tuple(x.shape)}")
    if lengths is None:
        return x.mean(dim=1)
    lengths = torch.as_tensor(lengths, device=x.device).long()
    if lengths.shape != (x.shape[0],) or bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
        raise ValueError(f"lengths must be ({x.shape[0]},) in [1, {x.shape[1]}], got {lengths.tolist()}")
    mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]  # (B, T)
    summed = x.masked_fill(~mask[..., None], 0.0).sum(dim=1)  # (B, D)
    return summed / lengths[:, None].to(x.dtype)


@dataclass(frozen=True)
class AdversaryConfig:
    """Hyperparameters of :class:`AdversaryHead` (saved with every checkpoint).

    Attributes:
        in_dim: width of the encoder output.
        n_speakers: number of speaker classes (the Train speakers).
        beta: weight of the speaker loss (004: 0, 0.1, 1).
        mode: ``reverse`` or ``forward``.
        beta_at: ``loss`` or ``grl`` (module docstring).
        hidden: 0 for the paper's single linear projection; otherwise one hidden ReLU layer.
        dropout: dropout before the classifier.
    """

    in_dim: int
    n_speakers: int
    beta: float = 1.0
    mode: str = "reverse"
    beta_at: str = "loss"
    hidden: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ADVERSARY_MODES:
            raise ValueError(f"mode must be one of {ADVERSARY_MODES}, got {self.mode!r}")
        if self.beta_at not in BETA_AT:
            raise ValueError(f"beta_at must be one of {BETA_AT}, got {self.beta_at!r}")
        if not (self.beta >= 0.0) or self.beta == float("inf"):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        for name in ("in_dim", "n_speakers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_speakers < 2:
            raise ValueError(f"n_speakers must be at least 2 for a speaker classifier, got {self.n_speakers}")
        if self.hidden < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"hidden must be >= 0 and dropout in [0, 1), got {self.hidden}, {self.dropout}")


class AdversaryHead(nn.Module):
    """Speaker classifier on the mean-pooled encoder output, behind gradient reversal.

    ``forward(x, lengths=None)``: ``x`` is (B, D) pooled or (B, T, D) frames with true
    ``lengths`` (B,), mean-pooled over true frames. Returns speaker logits (B, S).
    :meth:`loss` gives the term to add to the joint loss.

    Example:
        >>> head = AdversaryHead(AdversaryConfig(in_dim=8, n_speakers=3, beta=0.1))
        >>> logits = head(torch.randn(4, 10, 8), torch.tensor([10, 7, 3, 1]))
        >>> tuple(logits.shape)
        (4, 3)
    """

    def __init__(self, config: AdversaryConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = [nn.Dropout(config.dropout)] if config.dropout else []
        if config.hidden:
            layers += [nn.Linear(config.in_dim, config.hidden), nn.ReLU(),
                       nn.Linear(config.hidden, config.n_speakers)]
        else:
            layers.append(nn.Linear(config.in_dim, config.n_speakers))
        self.classifier = nn.Sequential(*layers)

    @property
    def _grl_coefficient(self) -> float:
        return self.config.beta if self.config.beta_at == "grl" else 1.0

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        pooled = masked_mean_pool(x, lengths)  # (B, D)
        if self.config.mode == "reverse":
            pooled = grad_reverse(pooled, self._grl_coefficient)
        elif self.config.beta_at == "grl":
            # forward mode, beta at the layer: the gradient scaled by +beta, no reversal
            pooled = _GradScale.apply(pooled, self.config.beta)
        return self.classifier(pooled)  # (B, S)

    def loss(self, logits: Tensor, speakers: Tensor) -> Tensor:
        """The speaker term of the joint loss: ``beta * CE`` (``beta_at="loss"``) or ``CE``.

        Args:
            logits: (B, S) from :meth:`forward`.
            speakers: (B,) class indices, ``-1`` for clips without a speaker label.

        Returns:
            A scalar; 0 (with a graph) when no clip has a speaker label.
        """
        speakers = torch.as_tensor(speakers, device=logits.device).long()
        keep = speakers != IGNORE_INDEX
        if not bool(keep.any()):
            return logits.sum() * 0.0
        ce = F.cross_entropy(logits[keep], speakers[keep])
        return ce * self.config.beta if self.config.beta_at == "loss" else ce

    def extra_state(self) -> dict:
        """The config as a plain dict (what a checkpoint stores to rebuild the head)."""
        return asdict(self.config)


__all__ = [
    "ADVERSARY_MODES",
    "BETA_AT",
    "AdversaryConfig",
    "AdversaryHead",
    "grad_reverse",
    "masked_mean_pool",
]
