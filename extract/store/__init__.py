"""The HDF5 feature store of a workdir: crash-safe journal, one compacted file per set, an
aligned reader. This package's public names; each module holds one concept.

Layout (see ARCHITECTURE.md)::

    WORKDIR/features/<key>.h5                       one set, compacted; replaced only by an
                                                    atomic rename
    WORKDIR/features.journal/<key>/set.json         the set's header (config, fields)
    WORKDIR/features.journal/<key>/part-*.h5        rows written since the last compaction
    WORKDIR/sets.json                               every set's header (for verify --repair)
    WORKDIR/features.h5                             a single-file store (layout 1): read as it
                                                    is, moved into per-set files by the next
                                                    compaction

Why a journal: a process killed while HDF5 is writing can leave a file that HDF5 cannot open
again. Here no HDF5 file is ever modified in place. Each batch of finished rows goes into a small
part file written under a temporary name, flushed to disk and renamed into place; a row counts
as stored once its part is renamed. Readers overlay the set's compacted file with the parts, so
parts are real data, and compaction (one new file of that set written beside the old and renamed
over it) is an optimisation that a kill can interrupt without loss. One file per set: adding or
compacting a set costs what that set holds, whatever else the store holds.

Within a set the newest record of a clip wins: a part is newer than the compacted file, and
parts are ordered by their name (a nanosecond timestamp, the pid and a counter). A record is
either a row of values or a failure with its reason.

Another pooling or layer of the same model is another set, with its own key: a set's header
(its fields and their shapes) is written once and checked on every write, and a record holds
every field of its clip. Letting new poolings join a stored set would mean records holding
only some fields, a header whose fields change while readers and killed writers see it, and
keys that no longer cover every stored value; each is a way to lose the guarantee that a stored
row is never deleted, overwritten or silently mixed. So the sets stay apart, and
:meth:`FeatureStore.find` resolves a spec by what is asked (``--pooling std`` picks the set
that stores it); when several sets still qualify, the error shows only the config fields that
differ between them and asks for a key.

Modules: :mod:`~extract.store.schema` (what a set is, names, errors), :mod:`~extract.store.files`
(atomic writes), :mod:`~extract.store.view` (reading a set), :mod:`~extract.store.journal`
(parts), :mod:`~extract.store.compaction` (one set into one file, memory bounded by bytes),
:mod:`~extract.store.catalogue` (``sets.json``), :mod:`~extract.store.lookup` (which set a spec
means), :mod:`~extract.store.feature_store` (the store).
"""
from __future__ import annotations

from extract.store.compaction import COMPACT_BLOCK_BYTES, row_blocks
from extract.store.feature_store import FeatureStore
from extract.store.files import atomic_h5, open_read, reserve_space
from extract.store.journal import SetWriter, part_name
from extract.store.lookup import extract_hint
from extract.store.schema import (
                                  CATALOG_FILE,
                                  JOURNAL_DIR,
                                  LAYOUT_VERSION,
                                  SCHEMA_VERSION,
                                  SETS_DIR,
                                  STORE_FILE,
                                  AmbiguousSet,
                                  ConfigMismatch,
                                  SchemaMismatch,
                                  SetHeader,
                                  SetInfo,
                                  StoreError,
                                  config_differences,
)
from extract.store.view import SetView

__all__ = [
    "CATALOG_FILE", "COMPACT_BLOCK_BYTES", "JOURNAL_DIR", "LAYOUT_VERSION", "SCHEMA_VERSION",
    "SETS_DIR", "STORE_FILE", "AmbiguousSet", "ConfigMismatch", "FeatureStore", "SchemaMismatch",
    "SetHeader", "SetInfo", "SetView", "SetWriter", "StoreError", "atomic_h5",
    "config_differences", "extract_hint", "open_read", "part_name", "reserve_space", "row_blocks",
]
