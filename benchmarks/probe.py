"""``bench probe``: a 13-layer x 2-pooling ridge probe of avb-high on 20,000 clips.

A synthetic workdir is built in a temporary folder: an SSL-like feature set (float16, fields
``pooled_mean`` and ``pooled_last`` of shape (layers, dim)) written through the real
``FeatureStore`` writer and compacted, and a csv-layout corpus (empty audio files; only the
table is read) with the 10 A-VB emotion columns. The labels are a sigmoid of a linear function
of a latent vector that the middle layers carry most clearly, so the probe has a curve to find.
Test clips have no labels (as in A-VB). Then the real ``run_probe`` runs; ``probe_seconds`` is
its wall time (corpus and labels read, every layer read, fitted, bootstrapped, files written).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.tasks import EMOTIONS
from data.workdir import save_corpus_ref
from extract.base import FieldSpec
from extract.store import FeatureStore, SetHeader

SYNTHETIC_SPEC = "ssl:synthetic"


def make_synthetic_workdir(workdir: str | os.PathLike, *, n_clips: int = 2000, n_layers: int = 13,
                           dim: int = 64, poolings: tuple[str, ...] = ("mean", "last"),
                           signal_layer: int | None = None, latent: int = 8,
                           dtype: str = "float16", split: tuple[float, float] = (0.5, 0.25),
                           seed: int = 0, test_labels: bool = False,
                           noise: float = 1.0, label_noise: float = 0.8) -> dict[str, Any]:
    """A workdir with an SSL-like feature set and a csv corpus with A-VB emotion labels.

    Layer ``l`` is ``z @ P_l * s_l + noise`` for a latent ``z`` (n, latent); the labels are
    ``sigmoid(z @ B)`` plus label noise. With ``signal_layer`` set, only that layer carries
    ``z`` (the others are noise); otherwise the signal strength ``s_l`` peaks at two thirds
    of the depth. ``mean`` and ``last`` poolings differ by their noise and a weaker signal for
    ``last``. Columns also include ``Country`` (4 classes, slightly related to ``z``) and
    ``Age``.

    Args:
        workdir: where the store, corpus and corpus reference go.
        n_clips: clips (Train / Val / Test by ``split`` fractions, rest Test).
        n_layers, dim: shape of each pooled field.
        poolings: which ``pooled_<p>`` fields to write.
        signal_layer: the one layer that carries the signal (None: a smooth curve).
        latent: width of ``z``.
        dtype: storage dtype.
        split: (Train, Val) fractions.
        seed: generator seed.
        test_labels: give Test clips labels too.
        noise: feature noise scale.
        label_noise: scale of the noise added to the labels' logits.

    Returns:
        ``{"workdir", "key", "ids", "layers", "dim"}``.
    """
    wd = Path(workdir)
    rng = np.random.default_rng(seed)
    n = n_clips
    ids = [f"c{i:06d}" for i in range(n)]
    z = rng.standard_normal((n, latent)).astype(np.float32)
    if signal_layer is None:
        depth = np.arange(n_layers) / max(1, n_layers - 1)
        strength = np.exp(-((depth - 2 / 3) ** 2) / 0.08)
    else:
        strength = (np.arange(n_layers) == signal_layer).astype(np.float64) * 2.0
    proj = rng.standard_normal((n_layers, latent, dim)).astype(np.float32) / np.sqrt(latent)

    fields = {f"pooled_{p}": FieldSpec((n_layers, dim), dtype,
                                       attrs={"layers": list(range(n_layers)), "pooling": p})
              for p in poolings}
    fields["num_frames"] = FieldSpec((), "int32")
    config = {"extractor": "ssl", "model": "synthetic", "layers": list(range(n_layers)),
              "poolings": list(poolings), "dtype": dtype, "seed": seed, "n": n, "dim": dim}
    key = f"ssl-synthetic-{seed:04d}{n_layers:02d}{dim:06d}"
    header = SetHeader(key=key, name="ssl-synthetic", spec=SYNTHETIC_SPEC, config=config,
                       config_hash=key[-12:], fields=fields,
                       provenance={"device": "cpu", "torch": "synthetic", "compute_dtype": "float32"})
    store = FeatureStore(wd)
    block = 1024
    with store.writer(header, flush_rows=4096, flush_bytes=256 << 20) as w:
        for lo in range(0, n, block):
            zb = z[lo:lo + block]
            signal = np.einsum("bk,lkd->bld", zb, proj) * strength[None, :, None].astype(np.float32)
            values = {}
            for j, p in enumerate(poolings):
                scale = 1.0 if j == 0 else 0.7
                nz = rng.standard_normal(signal.shape, dtype=np.float32) * noise
                values[f"pooled_{p}"] = (signal * scale + nz).astype(dtype)
            for i in range(len(zb)):
                w.add(ids[lo + i], f"h{lo + i}",
                      {**{k: v[i] for k, v in values.items()}, "num_frames": np.int32(50)})
    store.compact([key])

    beta = rng.standard_normal((latent, len(EMOTIONS))) / np.sqrt(latent) * 1.5
    y = 1 / (1 + np.exp(-(z @ beta + label_noise * rng.standard_normal((n, len(EMOTIONS))))))
    n_tr, n_va = int(split[0] * n), int(split[1] * n)
    splits = np.array(["train"] * n_tr + ["val"] * n_va + ["test"] * (n - n_tr - n_va))
    rng.shuffle(splits)
    country_score = z[:, 0] + rng.standard_normal(n)
    country = np.array(["China", "United States", "South Africa", "Venezuela"])[
        np.digitize(country_score, np.quantile(country_score, [0.25, 0.5, 0.75]))]
    age = np.round(30 + 5 * z[:, 1] + 3 * rng.standard_normal(n), 1)
    root = wd / "corpus"  # clip id = file name without extension
    root.mkdir(parents=True, exist_ok=True)
    for cid in ids:
        (root / f"{cid}.wav").touch()
    table = pd.DataFrame({"file": [f"{c}.wav" for c in ids], "split": splits,
                          "group": [f"s{i % 97}" for i in range(n)]})
    hide = (splits == "test") & (not test_labels)
    for j, e in enumerate(EMOTIONS):
        table[e] = np.where(hide, np.nan, np.round(y[:, j], 4))
    table["Country"] = np.where(hide, "", country)
    table["Age"] = np.where(hide, np.nan, age)
    labels = root / "labels.csv"
    table.to_csv(labels, index=False)
    save_corpus_ref(wd, root, "csv", labels)
    return {"workdir": str(wd), "key": key, "ids": ids, "layers": list(range(n_layers)), "dim": dim}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clips", type=int, default=20_000, help="clips (default: 20000)")
    p.add_argument("--layers", type=int, default=13, help="layers (default: 13)")
    p.add_argument("--dim", type=int, default=768, help="hidden size (default: 768)")
    p.add_argument("--seeds", type=int, default=3, help="probe seeds (default: 3)")
    p.add_argument("--n-boot", type=int, default=1000, help="Val bootstrap resamples (default: 1000)")
    p.add_argument("--jobs", type=int, default=1, help="BLAS threads (default: 1)")
    p.add_argument("--keep", metavar="DIR", help="build the workdir here and keep it")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from heads.probe import ProbeConfig, run_probe

    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(args.keep) if args.keep else Path(tmp) / "wd"
        t0 = time.perf_counter()
        make_synthetic_workdir(wd, n_clips=args.clips, n_layers=args.layers, dim=args.dim)
        build_s = time.perf_counter() - t0
        cfg = ProbeConfig(workdir=str(wd), features=SYNTHETIC_SPEC, task="avb-high", head="ridge",
                          poolings=("mean", "last"), seeds=args.seeds, n_boot=args.n_boot,
                          name="bench", n_jobs=args.jobs)
        t0, c0 = time.perf_counter(), time.process_time()
        result = run_probe(cfg)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        s = result.summary
        return {
            "probe_seconds": round(seconds, 2),
            "probe_cpu_seconds": round(cpu, 2),  # wall > cpu/threads: other jobs took the CPU
            "load_average_1min": round(os.getloadavg()[0], 2),
            "n_clips": args.clips, "n_layers": args.layers, "dims": args.dim, "poolings": 2,
            "seeds": args.seeds, "n_boot": args.n_boot, "threads": args.jobs,
            "n_train": s["n_clips"]["Train"], "n_val": s["n_clips"]["Val"],
            "dtype": "float16", "head": "ridge", "alphas": len(cfg.alphas),
            "best_layer": s["best"]["layer"], "best_pooling": s["best"]["pooling"],
            "best_score": round(s["best"]["score"], 4),
            "store_build_seconds": round(build_s, 1),
            "device": "cpu", "cpu_count": os.cpu_count(),
            "store_bytes": sum(p.stat().st_size for p in FeatureStore(wd).compacted_files()),
        }
