"""``model_<tag>.pt``: a trained net with everything needed to use it again.

The run's ``model.json`` (:mod:`heads.saved_model`) names these files; :func:`predict_checkpoint`
scores new feature rows with one. A checkpoint holds the best state of the net and of the weighting, the head name and net
config, the input kind and standardisation, the outputs with their label ranges, the training
options, the run's settings (``experiment``), the seed and the epochs. It is written under a
hidden temporary name and renamed.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import numpy as np

from data.tasks import Target
from heads.config import TrainOptions
from heads.nets import HeadNet, build_net
from heads.training.inputs import Inputs, pick_device
from heads.training.outputs import Output, to_label_space


def save_checkpoint(path: Path, *, net: HeadNet, weighting: torch.nn.Module, head: str,
                    inputs: Inputs, outputs: Sequence[Output], opts: TrainOptions,
                    run_config: dict[str, Any], seed: int, best_epoch: int, epochs_run: int,
                    auxiliary: dict[str, Any] | None = None) -> None:
    """Write the checkpoint of a trained net atomically to ``path``.

    ``auxiliary``: the state of seed 004's auxiliary heads
    (:meth:`heads.training.auxiliary.Auxiliary.state`), kept under ``"auxiliary"``; predicting
    with the checkpoint uses the net alone."""
    checkpoint = {
        "net": net.state_dict(), "weighting": weighting.state_dict(), "head": head,
        "input_dim": inputs.dim, "input_kind": inputs.kind, "net_tasks": [o.spec() for o in outputs],
        "net_config": dataclasses.asdict(net.config), "weighting_spec": opts.weighting,
        "options": dataclasses.asdict(opts), "experiment": dict(run_config), "seed": seed,
        "standardisation": inputs.state(),
        "outputs": [{"name": o.name, "task": o.task, "target": o.target.name, "loss": o.loss,
                     "lo": o.lo, "hi": o.hi, "classes": o.target.classes} for o in outputs],
        "best_epoch": best_epoch, "epochs_run": epochs_run,
    }
    if auxiliary is not None:
        checkpoint["auxiliary"] = auxiliary
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the net of a ``model_seed<k>.pt`` file with its best state.

    Returns:
        ``(net in eval mode, the checkpoint dict)``.
    """
    ckpt = torch.load(path, map_location=device, weights_only=False)
    cfg = ckpt["net_config"]
    net = build_net(ckpt["head"], ckpt["input_dim"], ckpt["net_tasks"], **cfg)
    net.load_state_dict(ckpt["net"])
    return net.eval(), ckpt


def predict_checkpoint(path: str | os.PathLike, X: np.ndarray | Sequence[np.ndarray], *,  # noqa: N803
                       targets: dict[tuple[str, str], Target], device: str = "cpu",
                       batch_size: int | None = None
                       ) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None]]:
    """Score clips with a net's checkpoint, as its run scored its clips.

    The inputs are standardised with the checkpoint's Train mean and std (vectors, or every
    frame of a sequence), the net runs in eval mode, and each output goes back to label units
    (:func:`heads.training.outputs.to_label_space`).

    Args:
        path: a ``model_<tag>.pt`` file.
        X: vector nets: ``(n, D)`` features as stored (the run's feature columns); sequence
            nets: one ``(T_i, D)`` frame array per clip.
        targets: ``(task, target) -> Target`` of the run (value ranges, classes).
        device: ``cpu``, ``cuda`` or ``auto``.
        batch_size: clips per forward pass (default: as the run scored: 8192 vectors, or twice
            the training batch of sequences, at least 64).

    Returns:
        ``(task, target) -> (values, probabilities)``: regression ``(n, k)`` float32 and None;
        classification ``(n,)`` class codes and ``(n, C)`` softmax probabilities.

    Raises:
        ValueError: inputs of another width than the net reads.
    """
    from heads.sequences import InMemorySequences
    from heads.training.loop import EVAL_BATCH_VECTORS, predict_raw

    dev = pick_device(device)
    net, ckpt = load_checkpoint(path, device=str(dev))
    st = ckpt["standardisation"]
    moments = (np.asarray(st["mean"], np.float32), np.asarray(st["std"], np.float32))
    dim = int(ckpt["input_dim"])
    if ckpt["input_kind"] == "vector":
        X = np.asarray(X, dtype=np.float32)  # noqa: N806
        if X.ndim != 2 or X.shape[1] != dim:
            raise ValueError(f"{path} reads {dim} feature columns; got shape {X.shape}")
        inputs = Inputs("vector", dev, X=X, moments=moments)
        batch = batch_size or EVAL_BATCH_VECTORS
    else:
        widths = {int(np.prod(a.shape[1:])) for a in X if len(a)}
        if widths - {dim}:
            raise ValueError(f"{path} reads frames of {dim} values; got {sorted(widths)}")
        seqs = InMemorySequences.from_arrays(list(X), dim=dim, dtype=np.float32)
        inputs = Inputs("sequence", dev, seqs=seqs, moments=moments)
        batch = batch_size or max(64, 2 * int(ckpt["options"]["batch_size"]))
    raw = predict_raw(net, inputs, np.arange(len(X)), batch)
    out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray | None]] = {}
    for o in ckpt["outputs"]:
        tg = targets[(o["task"], o["target"])]
        lo = None if o["lo"] is None else tuple(o["lo"])
        hi = None if o["hi"] is None else tuple(o["hi"])
        output = Output(o["name"], o["task"], tg, o["loss"], lo, hi)
        values = to_label_space(output, raw[o["name"]])
        probs = None
        if tg.kind == "classification":
            logits = torch.from_numpy(raw[o["name"]]).double()
            probs = torch.softmax(logits, dim=1).numpy()
        out[(o["task"], o["target"])] = (values, probs)
    return out


__all__ = ["save_checkpoint", "load_checkpoint", "predict_checkpoint"]
