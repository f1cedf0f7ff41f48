"""``bench heads``: training time of the torch heads through the real training loop.

Both runs call the registered head's ``fit`` (:mod:`heads.training`), what ``train`` uses (same loop, same
losses, weighting, Val scoring, curves and checkpoint writing); only the data are synthetic,
so no store is needed.

* ``mlp``: ``mlp-mtl`` with ``uw`` weighting on 20,000 Train clips x 768 features (plus 2,000
  Val clips for the per-epoch Val scores), 5 tasks (``avb-high`` 10 columns CCC, ``avb-two``
  2, ``avb-culture`` 40, ``avb-type`` 8 classes, ``country`` 4 classes), 30 epochs, no early
  stopping, batch 256 by default (seed 000 used 32: `--batch-size 32`, about 8x more steps).
* ``lstm``: the seed-002 ``lstm`` head (2 layers, last-frame pooling) on 20,000 Train
  sequences of 100 frames (plus 2,000 Val) for the ``avb-high`` task. The frame dimension,
  hidden size and epochs are arguments: the defaults (64-dim frames, hidden 64, 1 epoch)
  keep a 2-core CPU run near a minute; the paper's sizes (768, 512) are
  ``--lstm-dim 768 --lstm-hidden 512``, meant for a GPU.

Labels are a fixed random function of the features, so the losses fall as they should.
Throughput is training clips processed per second (clips x epochs / seconds, Val included in
the time).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch

MLP_TASKS = ("avb-high", "avb-two", "avb-culture", "avb-type", "country")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", type=int, default=20_000, help="Train clips (default: 20000)")
    parser.add_argument("--val-clips", type=int, default=2_000, help="Val clips (default: 2000)")
    parser.add_argument("--dim", type=int, default=768, help="MLP feature dimension (default: 768)")
    parser.add_argument("--epochs", type=int, default=30, help="MLP epochs (default: 30)")
    parser.add_argument("--batch-size", type=int, default=256, help="MLP batch size (default: 256)")
    parser.add_argument("--frames", type=int, default=100, help="LSTM frames per clip (default: 100)")
    parser.add_argument("--lstm-dim", type=int, default=64, help="LSTM frame dimension (default: 64)")
    parser.add_argument("--lstm-hidden", type=int, default=64, help="LSTM hidden size (default: 64)")
    parser.add_argument("--lstm-epochs", type=int, default=1, help="LSTM epochs (default: 1)")
    parser.add_argument("--lstm-batch-size", type=int, default=32, help="LSTM batch size (default: 32)")
    parser.add_argument("--skip-lstm", action="store_true", help="time only the MLP")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to train (auto: CUDA when available)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch CPU threads (default: every core, the machine's full speed; "
                             "on a machine busy with other jobs use 1: contended intra-op threads "
                             "made this run up to 8x slower)")


def _labels(tasks: list, Z: np.ndarray, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Learnable labels: a fixed random linear map of the first 32 dims, squashed or argmaxed."""
    truths: dict[str, dict[str, np.ndarray]] = {}
    for t in tasks:
        truths[t.name] = {}
        for tg in t.targets:
            W = rng.normal(size=(Z.shape[1], tg.num_outputs)) / np.sqrt(Z.shape[1])
            s = Z @ W
            if tg.kind == "classification":
                truths[t.name][tg.name] = s.argmax(axis=1).astype(np.int64)
            else:
                truths[t.name][tg.name] = (1.0 / (1.0 + np.exp(-2.0 * s))).astype(np.float32)
    return truths


def _split(n_train: int, n_val: int) -> np.ndarray:
    return np.array(["Train"] * n_train + ["Val"] * n_val)


def _time_fit(cfg: Any, ds: Any, tasks: list) -> tuple[float, dict[str, Any]]:
    from dataclasses import asdict

    from heads.base import FitOptions
    from heads.experiment import run_dir_of
    from heads.registry import get_head

    options = FitOptions(head_options=cfg.options, n_jobs=cfg.n_jobs, run_config=asdict(cfg))
    t0 = time.perf_counter()
    info = get_head(cfg.head).fit(ds, tasks, seed=0, out_dir=run_dir_of(cfg), options=options).params
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, info


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time both runs; returns the figures (``bench`` prints them as one JSON line)."""
    from data.tasks import get_task
    from heads.config import ExperimentConfig
    from heads.dataset import Dataset, SequenceDataset
    from heads.sequences import InMemorySequences
    from heads.training.inputs import pick_device

    torch.set_num_threads(max(1, args.threads))
    device = pick_device(args.device)
    rng = np.random.default_rng(0)
    n = args.clips + args.val_clips
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                           "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as workdir:
        # ---- mlp-mtl, uw, 5 tasks
        tasks = [get_task(name) for name in MLP_TASKS]
        X = rng.standard_normal((n, args.dim), dtype=np.float32)  # (n, D)
        ds = Dataset([f"c{i}" for i in range(n)], _split(args.clips, args.val_clips), X, tasks,
                     _labels(tasks, X[:, :32], rng), [])
        cfg = ExperimentConfig(workdir=workdir, task=",".join(MLP_TASKS), features=("synthetic",),
                               head="mlp-mtl", run_name="bench-mlp", n_jobs=torch.get_num_threads(),
                               options={"weighting": "uw", "epochs": args.epochs, "patience": 0,
                                        "batch_size": args.batch_size, "device": args.device})
        seconds, info = _time_fit(cfg, ds, tasks)
        out.update({"mlp_seconds": round(seconds, 2), "mlp_clips": args.clips, "mlp_dim": args.dim,
                    "mlp_tasks": len(tasks), "mlp_epochs": info["epochs_run"],
                    "mlp_batch_size": args.batch_size,
                    "samples_per_s": round(args.clips * info["epochs_run"] / seconds, 1),
                    "mlp_best_val": round(float(info["best_val_selection"]), 4)})
        del X, ds
        if args.skip_lstm:
            return out

        # ---- lstm over frame sequences
        tasks = [get_task("avb-high")]
        frames = rng.standard_normal((n * args.frames, args.lstm_dim), dtype=np.float32)
        offsets = np.arange(n + 1, dtype=np.int64) * args.frames
        clip_means = frames.reshape(n, args.frames, args.lstm_dim).mean(axis=1)
        seqs = InMemorySequences(frames, offsets)
        ds = SequenceDataset([f"c{i}" for i in range(n)], _split(args.clips, args.val_clips),
                             np.zeros((n, 0), np.float32), tasks,
                             _labels(tasks, clip_means * np.sqrt(args.frames), rng), [],
                             sequences=seqs)
        cfg = ExperimentConfig(workdir=workdir, task="avb-high", features=("synthetic",),
                               head="lstm", run_name="bench-lstm", n_jobs=torch.get_num_threads(),
                               options={"epochs": args.lstm_epochs, "patience": 0,
                                        "batch_size": args.lstm_batch_size, "device": args.device,
                                        "lr": 1e-3, "net": {"hidden": args.lstm_hidden}})
        seconds, info = _time_fit(cfg, ds, tasks)
        out.update({"lstm_seconds": round(seconds, 2), "lstm_clips": args.clips,
                    "lstm_frames": args.frames, "lstm_dim": args.lstm_dim,
                    "lstm_hidden": args.lstm_hidden, "lstm_layers": 2,
                    "lstm_epochs": info["epochs_run"], "lstm_batch_size": args.lstm_batch_size,
                    "lstm_samples_per_s": round(args.clips * info["epochs_run"] / seconds, 1)})
    return out
