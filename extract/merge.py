"""Fold shard stores (``extract --shard K/N``) into a workdir's store.

Each shard is a complete store of its own under ``WORKDIR/shards/K-of-N``. Merging copies every
shard's rows into the workdir's journal as parts (atomic, like any write), checks that every
shard used the same configuration for a set (same key, same config), then compacts. A merge
interrupted by a kill leaves the shards untouched and can simply be run again.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path


from extract.store import FeatureStore, StoreError, _open_read, atomic_h5, part_name

log = logging.getLogger(__name__)


def shard_dirs(workdir: Path) -> list[Path]:
    d = workdir / "shards"
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def _copy_as_part(src_file: Path, group: str, dest_dir: Path, seq: int) -> None:
    dest_dir.mkdir(parents=True, exist_ok=True)
    with _open_read(src_file) as src, atomic_h5(dest_dir / part_name(seq)) as dst:
        g = src[group] if group else src
        for child in g:
            src.copy(g[child], dst, name=child)


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
