"""FeatureStore: the store of one workdir, one compacted file per set plus the journal.

Which sets exist is read from the files themselves (each set file and journal folder holds its
header); every operation on a set touches only that set's files, so its cost follows the set,
not the store. A single-file store (layout 1, ``features.h5``) is read as it is and moved into
per-set files by the first compaction that has work to do (:meth:`FeatureStore.compact`).

One concept, at length: the store's public face (find, read, write, compact, drop, repair);
the mechanics are in the sibling modules.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from data.hints import workdir_command
from extract.store.catalogue import (
    catalog_path,
    catalog_problem,
    read_catalog,
    write_catalog,
)
from extract.store.compaction import write_set
from extract.store.files import (
    atomic_h5,
    atomic_write_text,
    file_size,
    fsync_dir,
    open_read,
    remove_empty_dir,
    temporary_files_in,
)
from extract.store.journal import SetWriter, part_paths
from extract.store.lookup import find_set
from extract.store.schema import (
    JOURNAL_DIR,
    SCHEMA_VERSION,
    SETS_DIR,
    STORE_FILE,
    ConfigMismatch,
    SchemaMismatch,
    SetHeader,
    SetInfo,
    StoreError,
)
from extract.store.view import SetView, Source

log = logging.getLogger(__name__)

_MISSING = object()


class FeatureStore:
    """The feature store of one workdir.

    Reading is safe while another process extracts (readers never see a half-written file).
    Writing goes through :meth:`writer`; one extraction per workdir is enforced by
    :mod:`extract.lock`, not here.

    Attributes:
        workdir: the workdir.
        sets_dir: ``WORKDIR/features``, one compacted file per set (:meth:`set_path`).
        journal: ``WORKDIR/features.journal``.
        path: ``WORKDIR/features.h5``, the single-file store of layout 1 (read, then migrated).

    Example:
        >>> import tempfile
        >>> store = FeatureStore(tempfile.mkdtemp())
        >>> store.keys()
        []
    """

    def __init__(self, workdir: str | os.PathLike) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / STORE_FILE
        self.sets_dir = self.workdir / SETS_DIR
        self.journal = self.workdir / JOURNAL_DIR

    # ---------------------------------------------------------------- files
    def set_path(self, key: str) -> Path:
        """The compacted file of one set: ``WORKDIR/features/<key>.h5``."""
        return self.sets_dir / f"{key}.h5"

    def set_files(self) -> dict[str, Path]:
        """Key -> compacted file of every set that has one (layout 2)."""
        if not self.sets_dir.is_dir():
            return {}
        return {p.name[:-3]: p for p in sorted(self.sets_dir.iterdir())
                if p.name.endswith(".h5") and not p.name.startswith(".") and p.is_file()}

    def compacted_files(self) -> list[Path]:
        """Every compacted file: the single-file store when there is one, then the set files."""
        return ([self.path] if self.path.exists() else []) + list(self.set_files().values())

    def exists(self) -> bool:
        """True when anything is stored (a compacted file or a journal part)."""
        return bool(self.compacted_files()) or any(self.journal.glob("*/part-*.h5"))

    # ---------------------------------------------------------------- schema checks
    def _damaged(self, path: Path, exc: BaseException) -> StoreError:
        return StoreError(
            f"{path} cannot be opened by HDF5 ({exc}); the file is damaged. Rows in "
            f"{self.journal} are intact: run `{workdir_command('verify', self.workdir, '--repair')}` "
            f"to rebuild the store from what can still be read.")

    def _check_version(self, path: Path, version: Any) -> None:
        if version is None or int(version) != SCHEMA_VERSION:
            raise SchemaMismatch(
                f"{path} has store schema version {version}, this program writes version "
                f"{SCHEMA_VERSION}. It will not be modified. Use another --workdir, or the "
                f"program version that wrote it to export the features.")

    def _read_file_attrs(self, path: Path, reader: Callable[[Any], Any]) -> Any:
        """``reader(file)`` of a compacted file, schema checked; ``_MISSING`` when it is gone.

        Raises:
            SchemaMismatch: another schema version.
            StoreError: HDF5 cannot open it.
        """
        try:
            with open_read(path) as f:
                self._check_version(path, f.attrs.get("schema_version"))
                return reader(f)
        except StoreError:
            raise
        except OSError as exc:
            if not path.exists():  # replaced or dropped meanwhile
                return _MISSING
            raise self._damaged(path, exc) from exc

    def check_schema(self) -> None:
        """Refuse a store written with another schema version (never overwrite it).

        Raises:
            SchemaMismatch: a compacted file's schema version differs from :data:`SCHEMA_VERSION`.
            StoreError: a compacted file exists but HDF5 cannot open it.
        """
        for p in self.compacted_files():
            self._read_file_attrs(p, lambda f: None)

    # ---------------------------------------------------------------- headers
    def _legacy_headers(self) -> dict[str, SetHeader]:
        if not self.path.exists():
            return {}
        got = self._read_file_attrs(self.path, lambda f: {
            k: SetHeader.from_json(g.attrs["header"]) for k, g in f.get("sets", {}).items()})
        return {} if got is _MISSING else got

    def _file_header(self, path: Path) -> SetHeader | None:
        got = self._read_file_attrs(path, lambda f: SetHeader.from_json(f.attrs["header"]))
        return None if got is _MISSING else got

    def _journal_header(self, key: str) -> SetHeader | None:
        p = self.journal / key / "set.json"
        try:
            return SetHeader.from_json(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def headers(self) -> dict[str, SetHeader]:
        """Every feature set's header, by key; newest first: journal, set file, single file.

        Raises:
            StoreError: a compacted file is damaged or of another schema version.
        """
        out = self._legacy_headers()  # read before the set files: a migration only adds them
        for key, p in self.set_files().items():
            h = self._file_header(p)
            if h is not None:
                out[key] = h
        if self.journal.is_dir():
            for d in sorted(self.journal.iterdir()):
                h = self._journal_header(d.name) if d.is_dir() else None
                if h is not None:
                    out[d.name] = h
        return out

    def keys(self) -> list[str]:
        return sorted(self.headers())

    def header(self, key: str) -> SetHeader:
        """One set's header, reading only that set's files (and the single file, if any)."""
        h = self._journal_header(key)
        if h is None and self.set_path(key).exists():
            h = self._file_header(self.set_path(key))
        if h is None:
            h = self._legacy_headers().get(key)
        if h is None:
            h = self.headers().get(key)  # moved between the looks above
        if h is None:
            raise KeyError(f"no feature set {key!r} in {self.workdir}; stored: "
                           f"{self.keys() or 'none'}")
        return h

    def find(self, spec_or_key: str, *,
             usable: Sequence[Callable[[SetHeader], str | None]] = ()) -> SetHeader:
        """The one set matching a key, a spec (``opensmile:eGeMAPSv02``) or a name
        (:func:`extract.store.lookup.find_set`: ``usable`` tests decide among sets sharing a
        spec).

        Raises:
            KeyError: nothing matches (lists what is stored).
            AmbiguousSet: several sets serve the request (names the config fields that differ).
        """
        return find_set(self.headers(), spec_or_key, self.workdir, usable=usable)

    def register(self, header: SetHeader) -> None:
        """Record a set's header in the journal, or check it against the stored one.

        Raises:
            ConfigMismatch: a set with this key exists with another configuration.
        """
        self.check_schema()
        existing = self.headers().get(header.key)
        if existing is not None:
            diff = existing.same_config(header)
            if diff is not None:
                raise ConfigMismatch(
                    f"feature set {header.key} is stored with a different configuration "
                    f"(field {diff!r} differs). Refusing to mix them; extract into a new "
                    f"--workdir, or remove the stored set first with "
                    f"`{workdir_command('verify', self.workdir, '--drop', header.key)}` (its rows "
                    f"are deleted)."
                )
            # Same configuration: nothing is written (a no-op rerun touches nothing); the run's
            # provenance is recorded with its rows (update_provenance).
            if self.catalog_problem() is None:
                return
            self._catalog_put(existing)
            return
        d = self.journal / header.key
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "set.json", header.to_json())
        self._catalog_put(header)

    def update_provenance(self, key: str, **entries: Any) -> None:
        """Merge entries into a set's provenance (stored with its header)."""
        h = self.header(key)
        prov = dict(h.provenance)
        prov.update(entries)
        d = self.journal / key
        d.mkdir(parents=True, exist_ok=True)
        new = SetHeader(**{**h.__dict__, "provenance": prov})
        atomic_write_text(d / "set.json", new.to_json())
        self._catalog_put(new)

    # ---------------------------------------------------------------- catalogue
    def catalog(self) -> dict[str, SetHeader]:
        """Every set ever registered here (headers kept in ``sets.json`` beside the store)."""
        return read_catalog(self.workdir)

    def catalog_problem(self) -> str | None:
        """What is wrong with ``sets.json`` (missing, unreadable, lacking stored sets), or None."""
        try:
            stored = set(self.headers())
        except StoreError:
            stored = set()
        return catalog_problem(self.workdir, stored)

    def rebuild_catalog(self, extra: dict[str, SetHeader] | None = None) -> list[str]:
        """Rewrite ``sets.json`` from every header that can be read; returns the keys added."""
        cat = self.catalog()
        before = set(cat)
        try:
            cat.update(self.headers())
        except StoreError:
            pass
        cat.update(extra or {})
        write_catalog(self.workdir, cat)
        return sorted(set(cat) - before)

    def _catalog_put(self, header: SetHeader | None, *, remove: str | None = None) -> None:
        cat = self.catalog()
        if not catalog_path(self.workdir).exists():
            # a deleted catalogue is rebuilt from the store, never replaced by one set
            try:
                cat.update(self.headers())
            except StoreError:
                pass
        if header is not None:
            cat[header.key] = header
        if remove is not None:
            cat.pop(remove, None)
        write_catalog(self.workdir, cat)

    # ---------------------------------------------------------------- views
    def _part_paths(self, key: str) -> list[Path]:
        return part_paths(self.journal / key)

    def _compacted_sources(self, key: str) -> list[tuple[Path, str]]:
        """The set's compacted records: its group in the single-file store, then its own file.

        Both exist when a migration was cut short (the set file then holds everything the group
        holds, and wins) or when an older version of this tool wrote a new ``features.h5`` into
        a workdir already moved to set files: its group then adds the clips the set file lacks,
        and the set file's records win where both hold a clip. A migration writes every set file
        before it deletes ``features.h5``, so looking at ``features.h5`` first and the set file
        second never misses both.
        """
        for _ in range(5):
            out: list[tuple[Path, str]] = []
            try:
                if self.path.exists():
                    with open_read(self.path) as f:
                        if f"sets/{key}" in f:
                            out.append((self.path, f"sets/{key}"))
            except FileNotFoundError:  # migrated meanwhile: its set file is there now
                continue
            if self.set_path(key).exists():
                out.append((self.set_path(key), ""))
            return out
        raise AssertionError(f"{self.path} appears and disappears")

    def sources_of(self, key: str) -> list[tuple[Path, str]]:
        """Where a set's records live, oldest first: (file, group inside it) pairs.

        Its group in the single-file store (layout 1), if any, then the set's own file, if
        any, then the journal parts.
        """
        return self._compacted_sources(key) + [(p, "") for p in self._part_paths(key)]

    def reader(self, key: str) -> SetView:
        """A view of one set: one consistent snapshot of its records, open until closed.

        Raises:
            KeyError: no such set.
            StoreError: its files cannot be read (names the fix).
        """
        header = self.header(key)
        for attempt in range(5):
            sources: list[Source] = []
            try:
                sources = [Source(p, g) for p, g in self.sources_of(key)]
                return SetView(header, sources)
            except OSError as exc:
                for s in sources:
                    s.close()
                if attempt == 4:
                    raise StoreError(f"cannot read feature set {key} in {self.workdir}: {exc}; "
                                     f"run `{workdir_command('verify', self.workdir)}`") from exc
                # A compaction replaced files or absorbed parts while we listed them: look again.
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def info(self, key: str) -> SetInfo:
        with self.reader(key) as v:
            return SetInfo(v.header, len(v.done()), len(v.failed()), len(self._part_paths(key)))

    def sets(self) -> list[SetInfo]:
        return [self.info(k) for k in self.keys()]

    def status(self, key: str) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """(done: id -> content hash, failed: id -> (hash, reason)) for a set."""
        if key not in self.headers():
            return {}, {}
        with self.reader(key) as v:
            return v.done(), v.failed()

    def notes(self, key: str) -> dict[str, list[str]]:
        """Warnings recorded per clip (e.g. a clip shorter than the receptive field)."""
        with self.reader(key) as v:
            return dict(v.notes)

    # ---------------------------------------------------------------- reading values
    def read(self, key: str, name: str, ids: Sequence[str], *, index: Any = None):
        """A fixed field aligned to ``ids``.

        Args:
            key: feature set key.
            name: field name (``functionals``, ``pooled_mean``, ...).
            ids: clip ids, in the order wanted.
            index: optional index applied to each row (e.g. a layer position for a
                ``(layers, dim)`` field) before stacking; read without loading other layers.

        Returns:
            ``(X, present)``: X of shape (len(ids), *row_shape) in the stored dtype, zeros where
            a clip is missing; ``present`` a bool mask.
        """
        with self.reader(key) as v:
            return v.read(name, ids, index=index)

    def read_sequence(self, key: str, name: str, clip_id: str):
        """One clip's frame sequence of a ragged field (reads only that clip's frames)."""
        with self.reader(key) as v:
            return v.read_sequence(name, clip_id)

    def read_sequences(self, key: str, name: str, ids: Sequence[str]):
        """Frame sequences for many clips (None where missing)."""
        with self.reader(key) as v:
            return v.read_sequences(name, ids)

    # ---------------------------------------------------------------- writing
    def writer(self, header: SetHeader, **kwargs: Any) -> SetWriter:
        """A journal writer for a set (registers the header first)."""
        self.register(header)
        return SetWriter(self, header, **kwargs)

    # ---------------------------------------------------------------- compaction
    def compact(self, keys: Iterable[str] | None = None, *, drop: Iterable[str] = ()) -> list[str]:
        """Fold each set's journal parts into a new file of that set, renamed into place.

        Only the sets compacted (or dropped) are touched, each alone: one set's file is written
        under a temporary name and renamed over the old one, then the parts it absorbed are
        deleted. A single-file store (layout 1) is moved into per-set files, once: each of its
        sets gets its own file, then ``features.h5`` is deleted. With nothing to fold or drop
        nothing is written, not even for a single-file store (a migration that was cut short
        is finished, though).

        Args:
            keys: sets to compact (default: every set with journal entries).
            drop: sets to remove from the store entirely.

        Returns:
            The keys that were compacted.

        Raises:
            OSError: a file could not be written (e.g. ``ENOSPC``); what was written before is
                complete and every row is still stored.
        """
        self.check_schema()
        drop = set(drop)
        all_headers = self.headers()
        with_journal = [k for k in all_headers if (self.journal / k).is_dir()]
        # a set without journal entries has nothing to fold: it is never rewritten
        keys = [k for k in (with_journal if keys is None else keys)
                if k not in drop and k in with_journal]
        drop = {k for k in drop if k in all_headers}
        # set files beside features.h5: a migration was cut short (kill, full disk); finish it
        migrating = self.path.exists() and bool(self.set_files())
        if not keys and not drop and not migrating:
            return []
        self.sets_dir.mkdir(parents=True, exist_ok=True)
        for k in keys:
            self._compact_set(all_headers[k])
        if self.path.exists():
            self._migrate(all_headers, skip=drop, compacted=set(keys))
        for k in sorted(drop):
            self._drop_set(k)
        remove_empty_dir(self.journal)
        remove_empty_dir(self.sets_dir)
        log.info("compacted %d feature set(s) into %s", len(keys), self.sets_dir)
        return list(keys)

    def _write_set_file(self, header: SetHeader, view: SetView) -> None:
        need = sum(file_size(s.path) if not s.group else s.stored_bytes() for s in view.sources)
        with atomic_h5(self.set_path(header.key), reserve=int(need * 1.05) + (1 << 20)) as out:
            write_set(out, header, view)

    def _compact_set(self, header: SetHeader) -> None:
        key = header.key
        with self.reader(key) as view:
            absorbed = [s.path for s in view.sources if s.path.parent == self.journal / key]
            self._write_set_file(header, view)
        for p in absorbed:  # only after the rename: the new file holds their rows
            p.unlink(missing_ok=True)
        jd = self.journal / key
        (jd / "set.json").unlink(missing_ok=True)
        remove_empty_dir(jd)

    def _migrate(self, headers: dict[str, SetHeader], *, skip: set[str],
                 compacted: set[str]) -> None:
        """Give every set of the single-file store its own file, then delete ``features.h5``.

        A set that already has its own file keeps it, unless the single file holds clips the
        set file lacks (an older version of this tool wrote ``features.h5`` into this workdir
        after it had moved to set files): then the two are folded into a new set file, the set
        file's records winning where both hold a clip. Sets in ``compacted`` were just folded
        from both already. A kill midway leaves complete set files and the single file; readers
        read both, and the next compaction goes on.
        """
        with open_read(self.path) as f:
            legacy = sorted(f.get("sets", {}))
        moved = folded = 0
        for k in legacy:
            if k in skip or k in compacted:
                continue
            sources = [Source(self.path, f"sets/{k}")]
            if self.set_path(k).exists():
                sources.append(Source(self.set_path(k), ""))
            with SetView(headers[k], sources) as view:
                if len(sources) == 2 and all(r.source == 1 for r in view.records.values()):
                    continue  # the set file already holds every record of the group
                self._write_set_file(headers[k], view)
            if len(sources) == 2:
                folded += 1
                log.warning("folded set %s of %s (written by an older version of vocal-probe "
                            "beside the set files) into %s", k, self.path, self.set_path(k))
            else:
                moved += 1
        self.path.unlink()
        fsync_dir(self.workdir)
        log.info("moved the single-file store %s into one file per set in %s (%d set(s) copied, "
                 "%d folded into existing set files)", self.path, self.sets_dir, moved, folded)

    def _drop_set(self, key: str) -> None:
        self.set_path(key).unlink(missing_ok=True)
        jd = self.journal / key
        if jd.is_dir():
            for p in jd.iterdir():
                p.unlink()
            jd.rmdir()
        self._catalog_put(None, remove=key)

    def temporary_files(self) -> list[Path]:
        """Temporary files of writers (left behind when one was killed), sorted."""
        dirs = [self.workdir, self.sets_dir,
                *(self.journal.iterdir() if self.journal.is_dir() else [])]
        return temporary_files_in(dirs)

    def clean_temporary(self) -> int:
        """Delete temporary files left by killed writers (the caller holds the lock)."""
        n = 0
        for p in self.temporary_files():
            p.unlink(missing_ok=True)
            n += 1
        return n
