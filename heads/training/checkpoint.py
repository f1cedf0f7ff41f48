"""``model_<tag>.pt``: a trained net with everything needed to use it again.

A checkpoint holds the best state of the net and of the weighting, the head name and net
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

from heads.config import TrainOptions
from heads.nets import HeadNet, build_net
from heads.training.inputs import Inputs
from heads.training.outputs import Output


def save_checkpoint(path: Path, *, net: HeadNet, weighting: torch.nn.Module, head: str,
                    inputs: Inputs, outputs: Sequence[Output], opts: TrainOptions,
                    run_config: dict[str, Any], seed: int, best_epoch: int, epochs_run: int) -> None:
    """Write the checkpoint of a trained net atomically to ``path``."""
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


__all__ = ["save_checkpoint", "load_checkpoint"]
