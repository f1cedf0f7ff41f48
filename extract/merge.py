"""Fold shard stores (``extract --shard K/N``) into a workdir's store.

Each shard is a complete store of its own under ``WORKDIR/shards/K-of-N`` (:func:`shard_dir`,
the one place that layout is spelled; a shard written by an older version may be a single-file
store, read the same way). Merging copies every shard's rows into the workdir's journal as parts
(atomic, like any write), checks that every shard used the same configuration for a set (same
key, same config), then compacts the merged sets, each into its own file. A merge interrupted by a kill leaves the
shards untouched and can simply be run again.

A shard whose extraction is still running (its writer holds the shard's lock) is refused, and
the merge holds every shard's lock while it works, so no shard gains rows meanwhile. After the
compaction only the files that were folded are deleted: a row the merge did not copy is never
removed.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import h5py

from extract.lock import WorkdirBusy, WorkdirLock
from extract.store import FeatureStore, StoreError, atomic_h5, open_read, part_name

log = logging.getLogger(__name__)

SHARDS_DIR = "shards"


def shard_dir(workdir: str | Path, k: int | str, n: int, *, prefix: str = "") -> Path:
    """Folder of shard ``k`` of ``n`` of a workdir (``WORKDIR/shards/[prefix]K-of-N``).

    Example:
        >>> shard_dir("runs/avb", 2, 8).as_posix()
        'runs/avb/shards/2-of-8'
    """
    return Path(workdir) / SHARDS_DIR / f"{prefix}{k}-of-{n}"


def shard_dirs(workdir: Path) -> list[Path]:
    """Every shard store folder of a workdir, sorted."""
    d = Path(workdir) / SHARDS_DIR
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def _copy_as_part(src_file: Path, group: str, dest_dir: Path, seq: int) -> None:
    """Copy one source of a shard's set (its own file, or its group in a single-file store)
    into the workdir's journal as a part (its records; the header is registered apart)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    with open_read(src_file) as src:
        g = src[group] if group else src
        need = _stored_bytes(g) if group else src_file.stat().st_size
        with atomic_h5(dest_dir / part_name(seq), reserve=need + (256 << 10)) as dst:
            for child in g:
                src.copy(g[child], dst, name=child)


def _stored_bytes(g: h5py.Group) -> int:
    """Bytes the data sets of one group take (a set inside a single-file store)."""
    sizes: list[int] = []
    g.visititems(lambda _, o: sizes.append(o.id.get_storage_size())
                 if isinstance(o, h5py.Dataset) else None)
    return sum(sizes)


_BOOKKEEPING = ("sets.json", "hash_cache.json", "corpus.json", "extract.lock")


def _remove_folded(shard: Path, folded: list[Path]) -> bool:
    """Delete the folded files of a shard, then the shard's folder if nothing else is left.

    Returns True when the folder is gone; anything unknown left in it is kept and logged.
    """
    for p in folded:
        p.unlink(missing_ok=True)
    store = FeatureStore(shard)
    store.clean_temporary()
    for d in sorted(store.journal.glob("*")) if store.journal.is_dir() else []:
        if d.is_dir() and not any(d.glob("part-*.h5")):
            (d / "set.json").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                d.rmdir()
    with contextlib.suppress(OSError):
        store.journal.rmdir()
    with contextlib.suppress(OSError):
        (shard / "features").rmdir()
    left = [p for p in shard.iterdir() if p.name not in _BOOKKEEPING]
    if left:
        log.warning("shard %s keeps files the merge did not fold: %s", shard,
                    ", ".join(p.name for p in left))
        return False
    for name in _BOOKKEEPING:
        (shard / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        shard.rmdir()
    return True


def merge_shards(store: FeatureStore, *, keep_shards: bool = False) -> dict[str, tuple[int, int]]:
    """Merge every shard store of ``store.workdir`` into it (the caller holds its lock).

    Returns:
        key -> (number of shards that had it, rows stored after the merge).

    Raises:
        StoreError: a shard's extraction is still running (names it and its process), a
            shard's set has another configuration, or a shard store is damaged or of another
            schema version. Nothing is copied or deleted then.
    """
    shards = shard_dirs(store.workdir)
    counts: dict[str, int] = {}
    with contextlib.ExitStack() as held:
        for d in shards:
            try:
                held.enter_context(WorkdirLock(d, purpose="merge"))
            except WorkdirBusy as exc:
                raise StoreError(f"shard {d} is still being extracted: {exc} Merge when every "
                                 f"shard has finished.") from None
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
        folded: dict[Path, list[Path]] = {s.workdir: [] for s in shard_stores}
        for s in shard_stores:
            for key in s.headers():
                dest = store.journal / key
                for src, group in s.sources_of(key):
                    seq += 1
                    _copy_as_part(src, group, dest, seq)
                    folded[s.workdir].append(src)
                counts[key] = counts.get(key, 0) + 1
        if counts:
            store.compact(list(counts))
        if not keep_shards:
            for d, files in folded.items():
                _remove_folded(d, sorted(set(files)))
    if not keep_shards:
        with contextlib.suppress(OSError):
            (store.workdir / SHARDS_DIR).rmdir()
    result = {}
    for key, n in counts.items():
        result[key] = (n, store.info(key).n_rows)
    log.info("merged %d shard(s) into %s", len(shards), store.workdir)
    return result
