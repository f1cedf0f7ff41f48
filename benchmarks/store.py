"""``bench store``: what each store operation costs as the store grows.

For each store size (default 2,000 and 10,000 clips; ``--large`` adds 60,000) it writes one
SSL-shaped set (``layers x dim`` float16 rows for two poolings, as ``ssl`` stores them) through
the real journal writer, then measures, each with its wall seconds and tracemalloc peak:

* ``compaction``: folding that set's journal into the compacted store;
* ``noop_rerun``: what a rerun with nothing to compute does to the store (open, status of the
  set, compact) and whether it replaced a compacted file (it must not);
* ``add_small_set``: a second set of 5 clips x 88 values (eGeMAPS-sized) written and compacted,
  and whether that replaced the large set's file (``add_small_set_rewrote_large_set``);
* ``one_layer_read``: one layer of one pooling for every clip, as a probe reads it.

Each is printed against ``read_once_s``, reading the bytes of the compacted store once in the
same run (best of three), as ``*_x_read_once``: a cost that grows faster than the store shows as
a growing ratio. The compacted files are found on disk (``features.h5`` and
``features/<key>.h5``), so the same benchmark measures either store layout.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from extract.base import FieldSpec
from extract.store import FeatureStore, SetHeader

_SMALL_CLIPS = 5
_SMALL_DIM = 88
_READ_CHUNK = 16 * 2**20


def _size(text: str) -> int:
    n = int(text)
    if n < _SMALL_CLIPS:
        raise argparse.ArgumentTypeError(f"a store size must be at least {_SMALL_CLIPS} clips, got {n}")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clips", type=_size, nargs="+", default=[2000, 10000],
                   help="store sizes in clips (default 2000 10000)")
    p.add_argument("--large", action="store_true", help="also measure a 60,000-clip store")
    p.add_argument("--layers", type=int, default=13)
    p.add_argument("--dim", type=int, default=768)


def _ssl_header(layers: int, dim: int) -> SetHeader:
    attrs = {"layers": list(range(layers))}
    return SetHeader(key="bench-ssl-000000000000", name="bench-ssl", spec="bench:ssl",
                     config={"extractor": "bench", "layers": layers, "dim": dim},
                     config_hash="000000000000",
                     fields={"pooled_mean": FieldSpec((layers, dim), "float16", False, attrs),
                             "pooled_std": FieldSpec((layers, dim), "float16", False, attrs)})


def _small_header() -> SetHeader:
    return SetHeader(key="bench-small-111111111111", name="bench-small", spec="bench:small",
                     config={"extractor": "bench-small", "dim": _SMALL_DIM},
                     config_hash="111111111111",
                     fields={"functionals": FieldSpec((_SMALL_DIM,), "float32", False, {})})


def _measure(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(seconds, tracemalloc peak MiB, result)`` of one call."""
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return seconds, peak / 2**20, result


def _compacted_files(root: Path) -> list[Path]:
    """The compacted store's files, whichever layout wrote them."""
    return sorted(p for p in [root / "features.h5", *(root / "features").glob("*.h5")]
                  if p.is_file())


def _inodes(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in _compacted_files(root)}


def _read_once(root: Path) -> int:
    n = 0
    for path in _compacted_files(root):
        with open(path, "rb") as f:
            while chunk := f.read(_READ_CHUNK):
                n += len(chunk)
    return n


def _write_ssl(store: FeatureStore, header: SetHeader, ids: list[str], layers: int, dim: int) -> None:
    base = np.random.default_rng(0).standard_normal((2, layers, dim)).astype(np.float16)
    with store.writer(header) as w:
        for i, cid in enumerate(ids):
            shift = np.float16((i % 997) / 997)
            w.add(cid, f"h{cid}", {"pooled_mean": base[0] + shift, "pooled_std": base[1] - shift})


def _one_size(root: Path, n: int, layers: int, dim: int) -> dict[str, Any]:
    store = FeatureStore(root)
    header = _ssl_header(layers, dim)
    ids = [f"c{i:07d}" for i in range(n)]
    _write_ssl(store, header, ids, layers, dim)
    out: dict[str, Any] = {"clips": n}

    s, mb, _ = _measure(store.compact)
    out |= {"compaction_s": s, "compaction_peak_mb": mb}
    out["store_mb"] = sum(p.stat().st_size for p in _compacted_files(root)) / 2**20
    out["read_once_s"] = min(_measure(lambda: _read_once(root))[0] for _ in range(3))

    inodes = _inodes(root)

    def noop() -> None:
        again = FeatureStore(root)
        again.status(header.key)
        again.compact()

    s, mb, _ = _measure(noop)
    out |= {"noop_rerun_s": s, "noop_rerun_peak_mb": mb,
            "noop_rerun_replaced_store": _inodes(root) != inodes}
    inodes = _inodes(root)

    small = _small_header()

    def add_small() -> None:
        rng = np.random.default_rng(1)
        with store.writer(small) as w:
            for cid in ids[:_SMALL_CLIPS]:
                w.add(cid, f"h{cid}", {"functionals": rng.standard_normal(_SMALL_DIM).astype(np.float32)})
        store.compact()

    s, mb, _ = _measure(add_small)
    after = _inodes(root)
    out |= {"add_small_set_s": s, "add_small_set_peak_mb": mb,
            "add_small_set_rewrote_large_set": any(after.get(k) != v for k, v in inodes.items())}

    layer = layers // 2
    s, mb, (X, present) = _measure(lambda: store.read(header.key, "pooled_mean", ids, index=layer))
    if not present.all() or X.shape != (n, dim):
        raise RuntimeError(f"bench store: one-layer read returned {X.shape}, {int(present.sum())} present")
    out |= {"one_layer_read_s": s, "one_layer_read_peak_mb": mb}

    base = max(out["read_once_s"], 1e-9)
    for op in ("compaction", "noop_rerun", "add_small_set", "one_layer_read"):
        out[f"{op}_x_read_once"] = out[f"{op}_s"] / base
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = list(args.clips) + ([60000] if args.large and 60000 not in args.clips else [])
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(_one_size(Path(tmp), n, args.layers, args.dim))
    return {"bench": "store", "layers": args.layers, "poolings": 2, "dim": args.dim,
            "dtype": "float16", "sizes": results}
