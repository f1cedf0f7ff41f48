"""Pure loss functions on tensors for the torch heads, and the :data:`LOSSES` registry.

Every loss returns a scalar tensor that goes down as predictions improve (``*_loss``). The
regression losses share one masking convention: ``mask`` is a bool tensor shaped like the
target, ``True`` where a label exists. Masked-out targets may hold anything (NaN included);
they never reach a value or a gradient. A batch with no valid entry gives a zero that still
belongs to the autograd graph, so a training step can always call ``backward``.

Example:
    >>> import torch
    >>> pred = torch.tensor([[0.1], [0.5], [0.9]])
    >>> round(float(ccc_loss(pred, pred)), 6)
    0.0
    >>> sorted(LOSSES)
    ['ccc', 'ce', 'mae', 'mse']
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[..., Tensor]

LOSSES: dict[str, LossFn] = {}
"""Loss name -> pure function ``(pred, target, ...) -> scalar tensor``."""


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator: put a loss function into :data:`LOSSES` under ``name``.

    Args:
        name: registry key (what configs and the CLI use).

    Returns:
        The decorator, which returns the function unchanged.

    Raises:
        ValueError: ``name`` is registered already.
    """

    def decorator(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss name {name!r} is registered twice")
        LOSSES[name] = fn
        return fn

    return decorator


def _as_columns(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes and return ``(pred, target, mask)`` as (batch, cols) with a bool mask."""
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape; got pred {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    if pred.dim() not in (1, 2):
        raise ValueError(f"expected (batch,) or (batch, cols) tensors; got {tuple(pred.shape)}")
    if mask is None:
        mask = torch.ones(pred.shape, dtype=torch.bool, device=pred.device)
    elif mask.shape != pred.shape:
        raise ValueError(
            f"mask must have the shape of pred {tuple(pred.shape)}; got {tuple(mask.shape)}"
        )
    mask = mask.to(dtype=torch.bool, device=pred.device)
    if pred.dim() == 1:
        pred, target, mask = pred[:, None], target[:, None], mask[:, None]
    return pred, target.to(pred.dtype), mask


def _zero_like(pred: Tensor) -> Tensor:
    """A zero scalar connected to ``pred``'s graph (``backward`` works, gradients are 0)."""
    return pred.sum() * 0.0


@register_loss("ccc")
def ccc_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """One minus Lin's concordance correlation coefficient, averaged over columns.

    Lin (1989), "A concordance correlation coefficient to evaluate reproducibility",
    Biometrics 45(1): ``ccc = 2 cov(x, y) / (var_x + var_y + (mean_x - mean_y)^2)``, with
    population moments (1/n), the form ``audmetric.concordance_cc`` computes (FIELD_NOTES
    section 2). Each column's moments use only its valid (unmasked) rows; the loss is
    ``mean_c (1 - ccc_c)`` over the columns that have at least one valid row.

    A column whose denominator is 0 (prediction and target constant and equal over the valid
    rows) counts as ``ccc = 0`` (loss 1): there is no spread to agree on, and the gradient
    stays finite.

    Args:
        pred: predictions, (batch,) or (batch, cols).
        target: labels, same shape; entries where ``mask`` is False are ignored (may be NaN).
        mask: bool, same shape; True where the label exists. ``None``: all labels exist.

    Returns:
        Scalar tensor in [0, 2].

    Raises:
        ValueError: shapes of ``pred``, ``target`` and ``mask`` differ, or are not 1-D/2-D.

    Example:
        >>> import torch
        >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0])
        >>> round(float(ccc_loss(x, 2 * x)), 6)  # 1 - 2*2.5/(1.25 + 5 + 2.25)
        0.411765
    """
    pred, target, mask = _as_columns(pred, target, mask)
    m = mask.to(pred.dtype)  # (batch, cols)
    n = m.sum(dim=0)  # (cols,)
    has_rows = n > 0
    n_safe = n.clamp_min(1.0)
    x = torch.where(mask, pred, torch.zeros_like(pred))  # (batch, cols)
    y = torch.where(mask, target, torch.zeros_like(target))  # (batch, cols)
    mean_x = x.sum(dim=0) / n_safe  # (cols,)
    mean_y = y.sum(dim=0) / n_safe  # (cols,)
    dx = (x - mean_x) * m  # (batch, cols)
    dy = (y - mean_y) * m  # (batch, cols)
    var_x = (dx * dx).sum(dim=0) / n_safe  # (cols,)
    var_y = (dy * dy).sum(dim=0) / n_safe  # (cols,)
    cov = (dx * dy).sum(dim=0) / n_safe  # (cols,)
    denom = var_x + var_y + (mean_x - mean_y) ** 2  # (cols,)
    defined = denom > 0
    ccc = torch.where(defined, 2.0 * cov / torch.where(defined, denom, torch.ones_like(denom)),
                      torch.zeros_like(denom))  # (cols,)
    if not bool(has_rows.any()):
        return _zero_like(pred)
    return (1.0 - ccc[has_rows]).mean()


def _masked_mean(values: Tensor, mask: Tensor, pred: Tensor) -> Tensor:
    """Mean of ``values`` over the True entries of ``mask``; a graph-connected 0 if none."""
    count = mask.sum()
    if int(count) == 0:
        return _zero_like(pred)
    return torch.where(mask, values, torch.zeros_like(values)).sum() / count


def _masked_difference(pred: Tensor, target: Tensor,
                       mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """``pred - target`` as (batch, cols) with 0 where the label is missing, and the mask."""
    pred, target, mask = _as_columns(pred, target, mask)
    return torch.where(mask, pred - target, torch.zeros_like(pred)), mask


@register_loss("mse")
def mse_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over the valid entries: ``sum_valid (pred - target)^2 / n_valid``.

    Args:
        pred: predictions, (batch,) or (batch, cols).
        target: labels, same shape; masked-out entries are ignored (may be NaN).
        mask: bool, same shape; True where the label exists. ``None``: all labels exist.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: shapes differ or are not 1-D/2-D.

    Example:
        >>> import torch
        >>> float(mse_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])))
        2.5
    """
    diff, mask = _masked_difference(pred, target, mask)
    return _masked_mean(diff * diff, mask, diff)


@register_loss("mae")
def mae_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error over the valid entries: ``sum_valid |pred - target| / n_valid``.

    Args:
        pred: predictions, (batch,) or (batch, cols).
        target: labels, same shape; masked-out entries are ignored (may be NaN).
        mask: bool, same shape; True where the label exists. ``None``: all labels exist.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: shapes differ or are not 1-D/2-D.

    Example:
        >>> import torch
        >>> float(mae_loss(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 0.0])))
        1.5
    """
    diff, mask = _masked_difference(pred, target, mask)
    return _masked_mean(diff.abs(), mask, diff)


@register_loss("ce")
def cross_entropy_loss(
    logits: Tensor,
    target: Tensor,
    *,
    class_weights: Tensor | Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int = -1,
) -> Tensor:
    """Softmax cross-entropy with optional class weights and label smoothing.

    Same definition as :func:`torch.nn.functional.cross_entropy` with ``reduction="mean"``:
    with weights ``w``, the loss of row ``i`` is ``w[y_i] * l_i`` and the mean divides by
    ``sum_i w[y_i]`` over the rows that are not ignored. Label smoothing ``eps`` (Szegedy et
    al. 2016, "Rethinking the Inception Architecture", Sec. 7) mixes the one-hot target with
    the uniform distribution: ``q = (1 - eps) onehot + eps / C``. Seed 000 uses
    ``eps = 0.1`` with :func:`inverse_frequency_weights` (FIELD_NOTES section 4).

    Args:
        logits: unnormalised scores, (batch, classes).
        target: class indices, (batch,) integer; ``ignore_index`` marks a missing label.
        class_weights: one weight per class, (classes,), or None for equal weights.
        label_smoothing: ``eps`` in [0, 1).
        ignore_index: target value that marks a row to skip.

    Returns:
        Scalar tensor; a graph-connected 0 when every row is ignored.

    Raises:
        ValueError: shapes do not fit, or ``label_smoothing`` is outside [0, 1).

    Example:
        >>> import torch
        >>> logits = torch.zeros(2, 4)
        >>> round(float(cross_entropy_loss(logits, torch.tensor([0, -1]))), 4)  # log 4
        1.3863
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (batch, classes); got {tuple(logits.shape)}")
    if target.shape != logits.shape[:1]:
        raise ValueError(
            f"target must be (batch,) = ({logits.shape[0]},) class indices; got {tuple(target.shape)}"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if weight.shape != (logits.shape[1],):
            raise ValueError(
                f"class_weights must have one entry per class ({logits.shape[1]}); "
                f"got shape {tuple(weight.shape)}"
            )
    target = target.to(device=logits.device, dtype=torch.long)
    if not bool((target != ignore_index).any()):
        return _zero_like(logits)
    return F.cross_entropy(
        logits, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )


def inverse_frequency_weights(counts: Sequence[int] | Tensor) -> Tensor:
    """Class weights from train counts: normalised inverse frequency, mean 1.

    ``w_c = (1 / n_c) / sum_j (1 / n_j) * C`` for ``C`` classes (seed 000, FIELD_NOTES
    section 4). The weights sum to ``C`` (their mean is 1), so a balanced train set gives
    all ones and the overall loss scale matches the unweighted loss.

    Args:
        counts: number of train examples per class, (classes,); all must be > 0.

    Returns:
        float32 tensor (classes,).

    Raises:
        ValueError: ``counts`` is empty, not 1-D, or holds a count <= 0 (a class absent from
            train has no inverse frequency: drop the class or give it a count).

    Example:
        >>> inverse_frequency_weights([1, 3]).tolist()
        [1.5, 0.5]
    """
    n = torch.as_tensor(counts, dtype=torch.float64)
    if n.dim() != 1 or n.numel() == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence; got shape {tuple(n.shape)}")
    if bool((n <= 0).any()):
        bad = [i for i, c in enumerate(n.tolist()) if c <= 0]
        raise ValueError(f"every class count must be > 0; classes {bad} have {n[bad].tolist()}")
    inv = 1.0 / n
    return (inv / inv.sum() * n.numel()).to(torch.float32)
