"""Fold shard stores (``extract --shard K/N``) into a workdir's store.

Each shard is a complete store of its own under ``WORKDIR/shards/K-of-N``. Merging copies every
shard's rows into the workdir's journal as parts (atomic, like any write), checks that every
shard used the same configuration for a set (same key, same config), then compacts. A merge
interrupted by a kill leaves the shards untouched and can simply be run again.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import h5py

from extract.store import SCHEMA_VERSION, FeatureStore, StoreError, _fsync_dir, _open_read

log = logging.getLogger(__name__)


def shard_dirs(workdir: Path) -> list[Path]:
    d = workdir / "shards"
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def _copy_as_part(src_file: Path, group: str, dest_dir: Path, seq: int) -> None:
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.time_ns()}-{os.getpid()}-{seq}.h5"
    tmp = dest_dir / f".{name}.tmp"
    try:
        with _open_read(src_file) as src, h5py.File(tmp, "w", libver="latest") as dst:
            g = src[group] if group else src
            for child in g:
                src.copy(g[child], dst, name=child)
            dst.attrs["schema_version"] = SCHEMA_VERSION
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest_dir / name)
        _fsync_dir(dest_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def merge_shards(store: FeatureStore, *, keep_shards: bool = False) -> dict[str, tuple[int, int]]:
    """Merge every shard store of ``store.workdir`` into it.

    Returns:
        key -> (number of shards that had it, rows stored after the merge).

    Raises:
        ConfigMismatch: a shard's set has another configuration than the store's.
        StoreError: a shard store is damaged or of another schema version.
    """
    shards = shard_dirs(store.workdir)
    counts: dict[str, int] = {}
    shard_stores = [FeatureStore(d) for d in shards]
    # Check everything first: nothing is copied when any shard disagrees.
    headers = {}
    for s in shard_stores:
        s.check_schema()
        for key, h in s.headers().items():
            if key in headers and headers[key].same_config(h):
                raise StoreError(f"shard {s.workdir} has set {key} with another configuration "
                                 f"({headers[key].same_config(h)} differs)")
            headers.setdefault(key, h)
    for key, h in headers.items():
        store.register(h)
    seq = 0
    for s in shard_stores:
        for key in s.headers():
            dest = store.journal / key
            if s.path.exists():
                with _open_read(s.path) as f:
                    has = f"sets/{key}" in f
                if has:
                    seq += 1
                    _copy_as_part(s.path, f"sets/{key}", dest, seq)
            for part in s._part_paths(key):
                seq += 1
                _copy_as_part(part, "", dest, seq)
            counts[key] = counts.get(key, 0) + 1
    if counts:
        store.compact(list(counts))
    if not keep_shards:
        for d in shards:
            shutil.rmtree(d, ignore_errors=True)
        try:
            (store.workdir / "shards").rmdir()
        except OSError:
            pass
    result = {}
    for key, n in counts.items():
        result[key] = (n, store.info(key).n_rows)
    log.info("merged %d shard(s) into %s", len(shards), store.path)
    return result
