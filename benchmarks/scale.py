"""``bench scale``: the shard + merge path against one store written in one process.

Writes the same synthetic SSL-shaped rows (layers x dim float16 per clip, plus a frame sequence)
once into a single store and once split over N shard stores by the real shard rule, merges the
shards with the real merge, checks the merged store equals the single one dataset by dataset, and
reports the merge cost per GB.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from extract.base import FieldSpec
from extract.merge import SHARDS_DIR, merge_shards, shard_dir
from extract.run import shard_of
from extract.store import FeatureStore, SetHeader


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clips", type=int, default=4000, help="synthetic clips (default 4000)")
    p.add_argument("--shards", type=int, default=4, help="shard count (default 4)")
    p.add_argument("--layers", type=int, default=13)
    p.add_argument("--dim", type=int, default=768)


def _header(layers: int, dim: int) -> SetHeader:
    return SetHeader(key="bench-scale-000000000000", name="bench-scale", spec="bench:scale",
                     config={"extractor": "bench", "layers": layers, "dim": dim},
                     config_hash="000000000000",
                     fields={"pooled_mean": FieldSpec((layers, dim), "float16", False,
                                                      {"layers": list(range(layers))}),
                             "frames_l12": FieldSpec((dim,), "float16", True)})


def _rows(ids: list[str], layers: int, dim: int):
    for cid in ids:
        rng = np.random.default_rng(int(cid[1:]))
        yield cid, f"h{cid}", {"pooled_mean": rng.standard_normal((layers, dim)).astype(np.float16),
                               "frames_l12": rng.standard_normal((5 + int(cid[1:]) % 20, dim)).astype(np.float16)}


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r", locking=False) as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    header = _header(args.layers, args.dim)
    ids = [f"c{i:07d}" for i in range(args.clips)]
    with tempfile.TemporaryDirectory() as tmp:
        single = FeatureStore(Path(tmp) / "single")
        t0 = time.perf_counter()
        with single.writer(header) as w:
            for cid, h, v in _rows(ids, args.layers, args.dim):
                w.add(cid, h, v)
        single.compact()
        single_s = time.perf_counter() - t0

        sharded = FeatureStore(Path(tmp) / "sharded")
        t0 = time.perf_counter()
        for k in range(args.shards):
            s = FeatureStore(shard_dir(sharded.workdir, k, args.shards))
            mine = [c for c in ids if shard_of(c, args.shards) == k]
            with s.writer(header) as w:
                for cid, h, v in _rows(mine, args.layers, args.dim):
                    w.add(cid, h, v)
            s.compact()
        shard_write_s = time.perf_counter() - t0
        shard_bytes = sum(p.stat().st_size for p in (sharded.workdir / SHARDS_DIR).rglob("*.h5"))
        t0 = time.perf_counter()
        merge_shards(sharded)
        merge_s = time.perf_counter() - t0
        a, b = _datasets(single.set_path(header.key)), _datasets(sharded.set_path(header.key))
        identical = sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
        gb = shard_bytes / 1e9
        return {"bench": "scale", "clips": args.clips, "shards": args.shards,
                "store_gb": round(single.set_path(header.key).stat().st_size / 1e9, 4),
                "single_process_write_s": round(single_s, 3),
                "shard_write_s": round(shard_write_s, 3), "merge_s": round(merge_s, 3),
                "merge_s_per_gb": round(merge_s / gb, 3) if gb else None,
                "merged_identical_to_single": bool(identical), "device": "cpu"}
