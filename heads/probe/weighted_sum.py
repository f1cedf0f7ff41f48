"""The SUPERB-style weighted-sum head (Yang et al., Interspeech 2021, section 3).

A softmax over learnable per-layer logits weights the Train-standardised layers; one linear
layer per target reads the weighted sum. For mean (and last) pooling this equals weighting the
frame sequences before pooling, since both poolings are linear in the frames; for max / std it
is a weighted sum of pooled vectors.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from heads.probe.data import ProbeData
from heads.scoring import score_task


@dataclass(frozen=True)
class WeightedSumConfig:
    """Training of the weighted-sum head (Adam, early stopping on the Val headline).

    Attributes:
        epochs: most epochs.
        lr: Adam learning rate of the linear heads.
        layer_lr: Adam learning rate of the layer logits (higher: few steps move them).
        weight_decay: L2 on the linear heads (not on the layer logits).
        batch_size: clips per step.
        patience: epochs without a better Val score before stopping.
    """

    epochs: int = 40
    lr: float = 5e-3
    layer_lr: float = 5e-2
    weight_decay: float = 1e-4
    batch_size: int = 64
    patience: int = 5


def _weighted_sum_model(n_layers: int, dim: int, outputs: Sequence[int]) -> Any:
    import torch
    from torch import nn

    class WeightedSumProbe(nn.Module):
        """softmax(logits)-weighted sum of layers -> one linear layer per target."""

        def __init__(self) -> None:
            super().__init__()
            self.layer_logits = nn.Parameter(torch.zeros(n_layers))  # uniform at start
            self.heads = nn.ModuleList(nn.Linear(dim, k) for k in outputs)

        def layer_weights(self) -> torch.Tensor:
            return torch.softmax(self.layer_logits, dim=0)  # (L,), sums to one

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # x: (batch, L, dim)
            h = torch.einsum("l,bld->bd", self.layer_weights(), x)  # (batch, dim)
            return [head(h) for head in self.heads]

    return WeightedSumProbe()


def fit_weighted_sum(X16: np.ndarray, data: ProbeData, seed: int, wcfg: WeightedSumConfig,  # noqa: N803
                     *, exclude: np.ndarray | None = None, n_jobs: int = 1) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, list]]:
    """Train the weighted-sum head for one seed (init and batch order come from the seed).

    Losses: MSE on Train-standardised regression targets (NaN entries masked), class-weighted
    cross-entropy (normalised inverse Train frequency) for classification; summed over
    targets. Early stopping on the Val headline; the best epoch's weights are kept.

    Args:
        X16: standardised features (n, L, d), float16.
        data: rows and labels.
        seed: torch seed.
        wcfg: training settings.
        exclude: (n,) rows left out of Train (non-finite features).
        n_jobs: torch threads.

    Returns:
        (predictions per target for every row, layer weights (L,) summing to one,
        curve: epoch, train_loss, val_score lists).
    """
    import torch

    task = data.task
    greater = task.headline != "mae"
    tr = data.rows("Train")
    if exclude is not None:
        tr = tr[~exclude[tr]]
    va = data.rows("Val")
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, n_jobs))
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        outputs, ys, scales = [], [], []
        for tg in task.targets:
            y = data.truths[tg.name]
            if tg.kind == "classification":
                c = len(tg.classes or ())
                freq = np.bincount(y[tr][y[tr] >= 0], minlength=c).astype(np.float64)
                inv = np.where(freq > 0, 1.0 / np.maximum(freq, 1), 0.0)
                weights = torch.tensor(inv / inv.sum() * (freq > 0).sum(), dtype=torch.float32)
                outputs.append(c)
                ys.append(torch.from_numpy(y.astype(np.int64)))
                scales.append(weights)
            else:
                mu = np.nanmean(y[tr], axis=0)
                sd = np.nanstd(y[tr], axis=0)
                sd = np.where(sd > 0, sd, 1.0)
                outputs.append(y.shape[1])
                ys.append(torch.from_numpy(((y - mu) / sd).astype(np.float32)))
                scales.append((mu, sd))
        model = _weighted_sum_model(X16.shape[1], X16.shape[2], outputs)
        opt = torch.optim.Adam([
            {"params": [model.layer_logits], "weight_decay": 0.0, "lr": wcfg.layer_lr},
            {"params": model.heads.parameters(), "weight_decay": wcfg.weight_decay}],
            lr=wcfg.lr)

        def batch_x(rows: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(X16[rows].astype(np.float32))

        def loss_of(outs: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
            total = torch.zeros(())
            for tg, out, y, sc in zip(task.targets, outs, ys, scales):
                yt = y[rows]
                if tg.kind == "classification":
                    if (yt >= 0).any():
                        total = total + torch.nn.functional.cross_entropy(
                            out, yt, weight=sc, ignore_index=-1)
                else:
                    ok = torch.isfinite(yt)
                    if ok.any():
                        total = total + ((out - torch.nan_to_num(yt)) ** 2)[ok].mean()
            return total

        def predict(rows: np.ndarray) -> dict[str, np.ndarray]:
            model.eval()
            parts: list[list[np.ndarray]] = [[] for _ in task.targets]
            with torch.no_grad():
                for lo in range(0, len(rows), 2048):
                    outs = model(batch_x(rows[lo:lo + 2048]))
                    for i, o in enumerate(outs):
                        parts[i].append(o.numpy())
            out = {}
            for i, tg in enumerate(task.targets):
                o = (np.concatenate(parts[i]) if parts[i]
                     else np.zeros((0, outputs[i]), dtype=np.float32))
                if tg.kind == "classification":
                    out[tg.name] = o.argmax(axis=1)
                else:
                    mu, sd = scales[i]
                    p = o.astype(np.float64) * sd + mu
                    out[tg.name] = np.clip(p, *tg.value_range) if tg.value_range else p
            return out

        def val_score() -> float:
            p = predict(va)
            return float(score_task(task, {k: v[va] for k, v in data.truths.items()}, p)["score"])

        curve: dict[str, list] = {"epoch": [], "train_loss": [], "val_score": [], "layer_weights": []}
        best_score, best_state, since = float("nan"), None, 0
        for epoch in range(wcfg.epochs):
            model.train()
            order = tr[torch.randperm(len(tr), generator=gen).numpy()]
            losses = []
            for lo in range(0, len(order), wcfg.batch_size):
                rows = order[lo:lo + wcfg.batch_size]
                loss = loss_of(model(batch_x(rows)), torch.from_numpy(rows))
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            score = val_score()
            curve["epoch"].append(epoch)
            curve["train_loss"].append(float(np.mean(losses)))
            curve["val_score"].append(score)
            curve["layer_weights"].append(model.layer_weights().detach().numpy().tolist())
            improved = best_state is None or (np.isfinite(score) and (
                np.isnan(best_score) or (score > best_score if greater else score < best_score)))
            if improved:
                best_score, best_state, since = score, copy.deepcopy(model.state_dict()), 0
            else:
                since += 1
                if since >= wcfg.patience:
                    break
        assert best_state is not None
        model.load_state_dict(best_state)
        preds = predict(np.arange(len(data.ids)))
        weights = model.layer_weights().detach().numpy().astype(np.float64)
    finally:
        torch.set_num_threads(prev_threads)
    return preds, weights, curve
