"""Net inputs on the device: standardised vectors (whole) or frame sequences (per batch),
and the device choice."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from heads.dataset import Dataset, fit_moments, standardise
from heads.sequences import SequenceSet, fit_frame_stats, pad_batch


class Inputs:
    """Standardised net inputs for rows of the dataset, built per batch.

    Vectors live on the device whole (standardised once); sequences are standardised and
    padded per batch (see :mod:`heads.sequences`).
    """

    def __init__(self, kind: str, device: torch.device, *, X: np.ndarray | None = None,
                 seqs: SequenceSet | None = None, train_rows: np.ndarray | None = None,
                 moments: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        # moments: a saved (mean, std) (predict), instead of fitting them on the Train rows
        self.kind, self.device = kind, device
        rows = np.asarray(train_rows if train_rows is not None else [], dtype=np.int64)
        if kind == "vector":
            assert X is not None
            self.mean_, self.std_ = moments if moments is not None else fit_moments(X, rows)
            Z, _ = standardise(X, rows, moments=(self.mean_, self.std_))  # (n, D) float32
            self.X = torch.from_numpy(Z).to(device)
            self.dim = int(X.shape[1])
        else:
            assert seqs is not None
            self.seqs = seqs
            self.mean_, self.std_ = moments if moments is not None else fit_frame_stats(seqs, rows)
            self.dim = int(seqs.dim)

    def batch(self, rows: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Net arguments for ``rows``: ``(x (B, D),)`` or ``(x (B, T, D), lengths (B,))``."""
        if self.kind == "vector":
            return (self.X[torch.as_tensor(rows).to(self.device)],)
        rows = rows.numpy() if isinstance(rows, torch.Tensor) else rows
        x, lengths = pad_batch(self.seqs, rows, self.mean_, self.std_)
        return torch.from_numpy(x).to(self.device), torch.from_numpy(lengths)

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "mean": np.asarray(self.mean_, np.float32).tolist(),
                "std": np.asarray(self.std_, np.float32).tolist()}



def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises:
        ValueError: ``cuda`` asked for but not available.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use auto or cpu")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")



def load_inputs(ds: Dataset, input_kind: str, device: torch.device) -> Inputs:
    """The inputs of a net of ``input_kind`` for every row of ``ds``.

    Raises:
        ValueError: a sequence head got a dataset without frame sequences, or one whose
            sequences do not cover its rows.
    """
    train_rows = ds.rows("Train")
    if input_kind == "vector":
        return Inputs("vector", device, X=ds.X, train_rows=train_rows)
    seqs = getattr(ds, "sequences", None)
    if seqs is None:
        raise ValueError("a sequence head needs frame sequences: build the dataset with "
                         "heads.dataset.build_sequence_dataset (the head's load_dataset does)")
    if len(seqs) != len(ds.ids):
        raise ValueError(f"sequences cover {len(seqs)} clips but the dataset has {len(ds.ids)}")
    return Inputs("sequence", device, seqs=seqs, train_rows=train_rows)


__all__ = ["Inputs", "pick_device", "load_inputs"]
