"""The HDF5 feature store of a workdir: crash-safe journal, compaction and an aligned reader.

Layout (see ARCHITECTURE.md)::

    WORKDIR/features.h5          compacted store, replaced only by an atomic rename
    WORKDIR/features.journal/<key>/set.json        the set's header (config, fields)
    WORKDIR/features.journal/<key>/part-*.h5       rows written since the last compaction

Why a journal: a process killed while HDF5 is writing can leave a file that HDF5 cannot open
again. Here no HDF5 file is ever modified in place. Each batch of finished rows goes into a small
part file written under a temporary name, flushed to disk and renamed into place; a row counts
as stored once its part is renamed. Readers overlay the compacted file with the parts, so parts
are real data, and compaction (one new ``features.h5`` written beside the old and renamed over
it) is an optimisation that a kill can interrupt without loss.

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
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from data.hints import extract_command, is_spec, workdir_command
from extract.base import FieldSpec

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STORE_FILE = "features.h5"
JOURNAL_DIR = "features.journal"
CATALOG_FILE = "sets.json"  # every set's header, outside HDF5: lets `verify --repair` rebuild
_STR = h5py.string_dtype("utf-8")
_ROW_BLOCK = 2048  # at most this many rows per block when reading or compacting
COMPACT_BLOCK_BYTES = 64 * 2**20
"""Bytes of field values one compaction block holds (about three blocks' worth are in memory
at once); a block always holds at least one row, so one clip larger than this is one block."""


class StoreError(RuntimeError):
    """The store cannot be used as asked; the message says why and what to do."""


class SchemaMismatch(StoreError):
    """The store was written with another schema version."""


class ConfigMismatch(StoreError):
    """A feature set's stored configuration differs from the one requested."""


class AmbiguousSet(KeyError):
    """Several stored sets match a spec or name and serve what was asked.

    The message shows only the configuration fields that differ between them.

    Attributes:
        spec: the spec or name that was asked for.
        keys: the candidates' keys, sorted.
    """

    def __init__(self, spec: str, headers: Sequence[SetHeader]) -> None:
        headers = sorted(headers, key=lambda h: h.key)
        self.spec = spec
        self.keys = [h.key for h in headers]
        differ = config_differences(headers)
        lines = [f"{h.key}: " + ", ".join(f"{k}={json.dumps(h.config.get(k), sort_keys=True)}"
                                          for k in differ) for h in headers]
        super().__init__(
            f"{len(headers)} feature sets match {spec!r} and hold what was asked; they differ in "
            f"{', '.join(differ) or 'nothing but their key'}:\n  " + "\n  ".join(lines)
            + f"\nName one by its key, e.g. --features {self.keys[0]}")

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def config_differences(headers: Sequence[SetHeader]) -> list[str]:
    """The config fields whose values are not the same in every header, sorted.

    Example:
        >>> a = SetHeader("a-1", "a", "k:a", {"m": 1, "poolings": ["mean"]}, "1", {})
        >>> b = SetHeader("a-2", "a", "k:a", {"m": 1, "poolings": ["std"]}, "2", {})
        >>> config_differences([a, b])
        ['poolings']
    """
    names = sorted({k for h in headers for k in h.config})
    return [k for k in names
            if len({json.dumps(h.config.get(k), sort_keys=True) for h in headers}) > 1]


@dataclass(frozen=True)
class SetHeader:
    """What a feature set is: written once when the set is created, checked on every write.

    Attributes:
        key: ``<name>-<config_hash>``.
        name: readable name (``opensmile-eGeMAPSv02-functionals``).
        spec: the spec string the user gave (``opensmile:eGeMAPSv02``).
        config: the extractor identity (everything that determines values).
        config_hash: hash of ``config`` and the schema version.
        fields: field name -> FieldSpec.
        provenance: library versions, device, dtype... plus a list of runs.
    """

    key: str
    name: str
    spec: str
    config: dict[str, Any]
    config_hash: str
    fields: dict[str, FieldSpec]
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        d = {
            "key": self.key, "name": self.name, "spec": self.spec, "config": self.config,
            "config_hash": self.config_hash, "schema_version": self.schema_version,
            "provenance": self.provenance,
            "fields": {k: {"shape": list(f.shape), "dtype": f.dtype, "ragged": f.ragged,
                           "attrs": f.attrs} for k, f in self.fields.items()},
        }
        return json.dumps(d, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> SetHeader:
        d = json.loads(text)
        fields = {k: FieldSpec(tuple(v["shape"]), v["dtype"], v["ragged"], v.get("attrs", {}))
                  for k, v in d["fields"].items()}
        return cls(d["key"], d["name"], d["spec"], d["config"], d["config_hash"], fields,
                   d.get("provenance", {}), d.get("schema_version", SCHEMA_VERSION))

    def same_config(self, other: SetHeader) -> str | None:
        """Name of the first config field that differs from ``other`` (None when equal)."""
        for attr in ("config_hash", "schema_version"):
            if getattr(self, attr) != getattr(other, attr):
                return attr
        for k in sorted(set(self.config) | set(other.config)):
            if self.config.get(k) != other.config.get(k):
                return f"config.{k}"
        if set(self.fields) != set(other.fields):
            return "fields"
        return None


@dataclass
class SetInfo:
    """A feature set as seen by a reader: its header and what is stored."""

    header: SetHeader
    n_rows: int
    n_failed: int
    n_parts: int

    @property
    def key(self) -> str:
        return self.header.key


# --------------------------------------------------------------------------------------------
# small helpers
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def part_name(seq: int) -> str:
    """Name of a new journal part; it sorts after every earlier part (see ``_PART_RE``)."""
    return f"part-{time.time_ns()}-{os.getpid()}-{seq}.h5"


def reserve_space(folder: Path, nbytes: int) -> None:
    """Make sure ``nbytes`` can be written in ``folder`` before HDF5 writes anything.

    HDF5 cannot recover from a write that fails for lack of space: the library is left with
    ids it can no longer close and the process crashes when it exits. So space is claimed
    first (``posix_fallocate`` of a reservation file, released right before the write) and a
    full disk is reported here as a plain ``OSError(ENOSPC)``.

    Raises:
        OSError: ``errno.ENOSPC`` when the space is not there.
    """
    if nbytes <= 0 or not hasattr(os, "posix_fallocate"):
        return
    res = folder / f".reserve.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(res, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # file system cannot tell
                return
            free = shutil.disk_usage(folder).free
            raise OSError(errno.ENOSPC, f"No space left on device: writing {folder} needs about "
                                        f"{nbytes / 1e6:.1f} MB, {free / 1e6:.1f} MB free") from None
    finally:
        os.close(fd)
        res.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_h5(path: Path, *, reserve: int = 0) -> Iterator[h5py.File]:
    """An HDF5 file that appears at ``path`` complete or not at all.

    Written under a temporary name in the same folder, flushed to disk, then renamed; on any
    error (disk full, Ctrl-C) the temporary file is removed and ``path`` is untouched.

    Args:
        path: the final name.
        reserve: bytes the file will need at most; claimed first (:func:`reserve_space`) so
            that a full disk fails before HDF5 writes.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    reserve_space(path.parent, reserve)
    f: h5py.File | None = None
    try:
        f = h5py.File(tmp, "w", libver="latest")
        f.attrs["schema_version"] = SCHEMA_VERSION
        yield f
        f.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _abandon(f, tmp)
        raise
    _fsync_dir(path.parent)


def _abandon(f: h5py.File | None, tmp: Path) -> None:
    """Close and delete a temporary HDF5 file after a failed write.

    On a full disk HDF5 cannot write the metadata it flushes when a file closes; an id left
    open then makes the library crash when the interpreter exits (segfault). Truncating the
    file first gives the space back (also while HDF5 holds it open), so the close succeeds.
    """
    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    if f is not None:
        for _ in range(2):
            try:
                if f.id.valid:
                    f.close()
                break
            except Exception:  # noqa: BLE001  # a close that fails once is retried once
                continue
    tmp.unlink(missing_ok=True)


def _strs(ds: h5py.Dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in ds[()]]


def open_read(path: Path) -> h5py.File:
    return h5py.File(path, "r", locking=False)


_PART_RE = re.compile(r"^part-(\d+)-(\d+)-(\d+)\.h5$")


class _Source:
    """One place rows come from: the compacted set or a journal part (kept open while used)."""

    def __init__(self, path: Path, group: str, order: tuple) -> None:
        self.path = path
        self.group = group
        self.order = order
        self._file: h5py.File | None = None

    @property
    def g(self) -> h5py.Group:
        if self._file is None:
            self._file = open_read(self.path)
        return self._file[self.group] if self.group else self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def ids(self) -> list[str]:
        return _strs(self.g["ids"]) if "ids" in self.g else []

    def hashes(self) -> list[str]:
        return _strs(self.g["hashes"]) if "hashes" in self.g else []

    def failures(self) -> list[tuple[str, str, str]]:
        if "failures" not in self.g:
            return []
        f = self.g["failures"]
        return list(zip(_strs(f["ids"]), _strs(f["hashes"]), _strs(f["reasons"])))

    def notes(self) -> list[tuple[str, str]]:
        if "notes" not in self.g:
            return []
        n = self.g["notes"]
        return list(zip(_strs(n["ids"]), _strs(n["texts"])))

    def lengths(self, name: str) -> np.ndarray:
        """Frames of every row of a ragged field, from its offsets (the data is not read)."""
        return np.diff(self.g["fields"][name]["offsets"][()])

    def read_rows(self, name: str, spec: FieldSpec, lo: int, hi: int) -> list[np.ndarray] | np.ndarray:
        """Rows lo..hi-1 of a field: an array for fixed fields, a list of arrays for ragged."""
        node = self.g["fields"][name]
        if not spec.ragged:
            return node[lo:hi]
        offsets = node["offsets"][lo:hi + 1]
        data = node["data"][offsets[0]:offsets[-1]]
        return [data[offsets[i] - offsets[0]:offsets[i + 1] - offsets[0]] for i in range(hi - lo)]


@dataclass
class _Record:
    source: int          # index into the source list
    row: int             # row in that source (-1 for a failure)
    hash: str
    reason: str | None   # failure reason, None for a row of values


class _SetView:
    """Latest record per clip of one set, over the compacted file and the journal parts."""

    def __init__(self, header: SetHeader, sources: list[_Source]) -> None:
        self.header = header
        self.sources = sources
        self.records: dict[str, _Record] = {}
        self.notes: dict[str, list[str]] = {}
        for si, src in enumerate(sources):
            for row, (cid, h) in enumerate(zip(src.ids(), src.hashes())):
                self.records[cid] = _Record(si, row, h, None)
            for cid, h, reason in src.failures():
                self.records[cid] = _Record(si, -1, h, reason)
            for cid, text in src.notes():
                self.notes.setdefault(cid, [])
                if text not in self.notes[cid]:
                    self.notes[cid].append(text)

    def done(self) -> dict[str, str]:
        return {c: r.hash for c, r in self.records.items() if r.reason is None}

    def failed(self) -> dict[str, tuple[str, str]]:
        return {c: (r.hash, r.reason) for c, r in self.records.items() if r.reason is not None}

    def close(self) -> None:
        for s in self.sources:
            s.close()


# --------------------------------------------------------------------------------------------
def extract_hint(workdir: Path, spec_or_key: str) -> str:
    """``Run `<the extract command>` first.`` for a missing set (data.hints)."""
    if is_spec(spec_or_key):
        return f"Run `{extract_command(workdir, spec_or_key)}` first."
    return (f"{spec_or_key!r} is no extractor spec; to compute a set, run "
            f"`{extract_command(workdir, 'SPEC')}` first, SPEC being e.g. opensmile:eGeMAPSv02.")


class FeatureStore:
    """The feature store of one workdir.

    Reading is safe while another process extracts (readers never see a half-written file).
    Writing goes through :meth:`writer`; one extraction per workdir is enforced by
    :mod:`extract.lock`, not here.

    Example:
        >>> import tempfile
        >>> store = FeatureStore(tempfile.mkdtemp())
        >>> store.keys()
        []
    """

    def __init__(self, workdir: str | os.PathLike) -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / STORE_FILE
        self.journal = self.workdir / JOURNAL_DIR

    # ---------------------------------------------------------------- schema checks
    def check_schema(self) -> None:
        """Refuse a store written with another schema version (never overwrite it).

        Raises:
            SchemaMismatch: the file's schema version differs from :data:`SCHEMA_VERSION`.
            StoreError: the file exists but HDF5 cannot open it.
        """
        if not self.path.exists():
            return
        try:
            with open_read(self.path) as f:
                version = f.attrs.get("schema_version")
        except OSError as exc:
            raise StoreError(
                f"{self.path} cannot be opened by HDF5 ({exc}); the file is damaged. Rows in "
                f"{self.journal} are intact: run `{workdir_command('verify', self.workdir, '--repair')}` to "
                f"rebuild the store from what can still be read."
            ) from exc
        if version is None or int(version) != SCHEMA_VERSION:
            raise SchemaMismatch(
                f"{self.path} has store schema version {version}, this program writes version "
                f"{SCHEMA_VERSION}. It will not be modified. Use another --workdir, or the "
                f"program version that wrote it to export the features."
            )

    # ---------------------------------------------------------------- headers
    def _compact_headers(self) -> dict[str, SetHeader]:
        if not self.path.exists():
            return {}
        self.check_schema()
        out = {}
        with open_read(self.path) as f:
            for key, g in f.get("sets", {}).items():
                out[key] = SetHeader.from_json(g.attrs["header"])
        return out

    def _journal_header(self, key: str) -> SetHeader | None:
        p = self.journal / key / "set.json"
        if not p.exists():
            return None
        return SetHeader.from_json(p.read_text(encoding="utf-8"))

    def headers(self) -> dict[str, SetHeader]:
        """Every feature set's header, by key (journal headers override: they are newer)."""
        out = self._compact_headers()
        if self.journal.is_dir():
            for d in sorted(self.journal.iterdir()):
                h = self._journal_header(d.name) if d.is_dir() else None
                if h is not None:
                    out[d.name] = h
        return out

    def keys(self) -> list[str]:
        return sorted(self.headers())

    def header(self, key: str) -> SetHeader:
        hs = self.headers()
        if key not in hs:
            raise KeyError(f"no feature set {key!r} in {self.workdir}; stored: {sorted(hs) or 'none'}")
        return hs[key]

    def find(self, spec_or_key: str, *,
             usable: Sequence[Callable[[SetHeader], str | None]] = ()) -> SetHeader:
        """The one set matching a key, a spec (``opensmile:eGeMAPSv02``) or a name.

        Several sets can share a spec: extracting another pooling or layer of the same model
        makes another set (see the module docstring). ``usable`` resolves the name by what the
        caller asks for: each test returns None when a set serves the request, or why it does
        not. The tests are tried in order (the strictest first); the first one that some
        matching sets pass decides among them.

        Raises:
            KeyError: nothing matches (lists what is stored).
            AmbiguousSet: several sets serve the request (names the config fields that differ).
        """
        hs = self.headers()
        if spec_or_key in hs:
            return hs[spec_or_key]
        hits = [h for h in hs.values() if spec_or_key in (h.spec, h.name)]
        if len(hits) == 1:
            return hits[0]
        stored = "\n  ".join(f"{h.key}  ({h.spec})" for h in hs.values()) or "none"
        if not hits:
            raise KeyError(
                f"no feature set matches {spec_or_key!r} in {self.workdir}. Stored sets:\n  {stored}\n"
                + extract_hint(self.workdir, spec_or_key)
            )
        reasons: dict[str, str] = {}
        for test in usable:
            fit = []
            for h in hits:
                why = test(h)
                if why is None:
                    fit.append(h)
                else:
                    reasons.setdefault(h.key, why)
            if len(fit) == 1:
                return fit[0]
            if fit:
                hits = fit
                break
        else:
            if usable:  # no set serves the request: say what each one lacks
                raise KeyError(
                    f"{len(hits)} feature sets match {spec_or_key!r} in {self.workdir}, none holds "
                    f"what was asked:\n  " + "\n  ".join(f"{h.key}: {reasons[h.key]}" for h in hits))
        raise AmbiguousSet(spec_or_key, hits)

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
        _atomic_write_text(d / "set.json", header.to_json())
        self._catalog_put(header)

    def update_provenance(self, key: str, **entries: Any) -> None:
        """Merge entries into a set's provenance (stored with its header)."""
        h = self.header(key)
        prov = dict(h.provenance)
        prov.update(entries)
        d = self.journal / key
        d.mkdir(parents=True, exist_ok=True)
        new = SetHeader(**{**h.__dict__, "provenance": prov})
        _atomic_write_text(d / "set.json", new.to_json())
        self._catalog_put(new)

    # ---------------------------------------------------------------- catalogue
    def catalog(self) -> dict[str, SetHeader]:
        """Every set ever registered here (headers kept in ``sets.json`` beside the store)."""
        p = self.workdir / CATALOG_FILE
        if not p.exists():
            return {}
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except ValueError:
            return {}
        return {k: SetHeader.from_json(v) for k, v in raw.items()}

    def catalog_problem(self) -> str | None:
        """What is wrong with ``sets.json`` (missing, unreadable, lacking stored sets), or None."""
        p = self.workdir / CATALOG_FILE
        try:
            stored = set(self.headers())
        except StoreError:
            stored = set()
        if not p.exists():
            return (f"{p} is missing" if stored else None)
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
            assert isinstance(raw, dict)
        except (ValueError, AssertionError):
            return f"{p} cannot be parsed"
        lacking = sorted(stored - set(raw))
        return f"{p} lacks {len(lacking)} stored set(s): {', '.join(lacking)}" if lacking else None

    def rebuild_catalog(self, extra: dict[str, SetHeader] | None = None) -> list[str]:
        """Rewrite ``sets.json`` from every header that can be read; returns the keys added."""
        before = set(self.catalog())
        cat = {k: h.to_json() for k, h in self.catalog().items()}
        with contextlib.suppress(StoreError):
            cat.update({k: h.to_json() for k, h in self.headers().items()})
        cat.update({k: h.to_json() for k, h in (extra or {}).items()})
        _atomic_write_text(self.workdir / CATALOG_FILE, json.dumps(cat, sort_keys=True))
        return sorted(set(cat) - before)

    def _catalog_put(self, header: SetHeader | None, *, remove: str | None = None) -> None:
        cat = {k: h.to_json() for k, h in self.catalog().items()}
        if not (self.workdir / CATALOG_FILE).exists():
            # a deleted catalogue is rebuilt from the store, never replaced by one set
            with contextlib.suppress(StoreError):
                cat.update({k: h.to_json() for k, h in self.headers().items()})
        if header is not None:
            cat[header.key] = header.to_json()
        if remove is not None:
            cat.pop(remove, None)
        _atomic_write_text(self.workdir / CATALOG_FILE, json.dumps(cat, sort_keys=True))

    # ---------------------------------------------------------------- views
    def _part_paths(self, key: str) -> list[Path]:
        d = self.journal / key
        if not d.is_dir():
            return []
        parts = []
        for p in d.iterdir():
            m = _PART_RE.match(p.name)
            if m:
                parts.append(((int(m.group(1)), int(m.group(2)), int(m.group(3))), p))
        return [p for _, p in sorted(parts)]

    def sources_of(self, key: str) -> list[tuple[Path, str]]:
        """Where a set's records live, oldest first: (file, group inside it) pairs."""
        out: list[tuple[Path, str]] = []
        if self.path.exists():
            with open_read(self.path) as f:
                if f"sets/{key}" in f:
                    out.append((self.path, f"sets/{key}"))
        return out + [(p, "") for p in self._part_paths(key)]

    def _view(self, key: str) -> _SetView:
        header = self.header(key)
        for attempt in range(5):
            sources: list[_Source] = []
            if self.path.exists():
                with open_read(self.path) as f:
                    present = f"sets/{key}" in f
                if present:
                    sources.append(_Source(self.path, f"sets/{key}", (0,)))
            for i, p in enumerate(self._part_paths(key)):
                sources.append(_Source(p, "", (1, i)))
            try:
                return _SetView(header, sources)
            except (FileNotFoundError, OSError) as exc:
                for s in sources:
                    s.close()
                if attempt == 4:
                    raise StoreError(f"cannot read feature set {key} in {self.workdir}: {exc}; "
                                     f"run `{workdir_command('verify', self.workdir)}`") from exc
                # A compaction absorbed parts while we listed them: look again.
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def info(self, key: str) -> SetInfo:
        v = self._view(key)
        try:
            return SetInfo(v.header, len(v.done()), len(v.failed()), len(self._part_paths(key)))
        finally:
            v.close()

    def sets(self) -> list[SetInfo]:
        return [self.info(k) for k in self.keys()]

    def status(self, key: str) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """(done: id -> content hash, failed: id -> (hash, reason)) for a set."""
        if key not in self.headers():
            return {}, {}
        v = self._view(key)
        try:
            return v.done(), v.failed()
        finally:
            v.close()

    def notes(self, key: str) -> dict[str, list[str]]:
        """Warnings recorded per clip (e.g. a clip shorter than the receptive field)."""
        v = self._view(key)
        try:
            return dict(v.notes)
        finally:
            v.close()

    # ---------------------------------------------------------------- reading values
    def read(self, key: str, name: str, ids: Sequence[str], *, index: Any = None
             ) -> tuple[np.ndarray, np.ndarray]:
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
        v = self._view(key)
        try:
            spec = v.header.fields.get(name)
            if spec is None:
                raise KeyError(f"set {key} has no field {name!r}; fields: {sorted(v.header.fields)}")
            if spec.ragged:
                raise ValueError(f"field {name!r} is ragged: use read_sequence()")
            row_shape = spec.shape if index is None else np.empty(spec.shape)[index].shape
            out = np.zeros((len(ids), *row_shape), dtype=spec.dtype)
            present = np.zeros(len(ids), dtype=bool)
            by_source: dict[int, list[tuple[int, int]]] = {}
            for i, cid in enumerate(ids):
                r = v.records.get(cid)
                if r is not None and r.reason is None:
                    by_source.setdefault(r.source, []).append((r.row, i))
            for si, pairs in by_source.items():
                pairs.sort()
                rows = np.array([p[0] for p in pairs])
                dest = np.array([p[1] for p in pairs])
                ds = v.sources[si].g["fields"][name]
                # Read contiguous blocks of rows (fast hyperslabs), keep the ones we need.
                for lo in range(0, len(rows), _ROW_BLOCK):
                    r_blk, d_blk = rows[lo:lo + _ROW_BLOCK], dest[lo:lo + _ROW_BLOCK]
                    a, b = int(r_blk[0]), int(r_blk[-1]) + 1
                    sel = (slice(a, b),) if index is None else (slice(a, b), *np.index_exp[index])
                    block = ds[sel]
                    out[d_blk] = block[r_blk - a]
                present[dest] = True
            return out, present
        finally:
            v.close()

    def read_sequence(self, key: str, name: str, clip_id: str) -> np.ndarray:
        """One clip's frame sequence of a ragged field (reads only that clip's frames)."""
        v = self._view(key)
        try:
            r = v.records.get(clip_id)
            if r is None or r.reason is not None:
                raise KeyError(f"clip {clip_id!r} has no stored row in set {key}")
            spec = v.header.fields[name]
            return v.sources[r.source].read_rows(name, spec, r.row, r.row + 1)[0]
        finally:
            v.close()

    def read_sequences(self, key: str, name: str, ids: Sequence[str]) -> list[np.ndarray | None]:
        """Frame sequences for many clips (None where missing)."""
        v = self._view(key)
        try:
            spec = v.header.fields[name]
            out: list[np.ndarray | None] = [None] * len(ids)
            for i, cid in enumerate(ids):
                r = v.records.get(cid)
                if r is not None and r.reason is None:
                    out[i] = v.sources[r.source].read_rows(name, spec, r.row, r.row + 1)[0]
            return out
        finally:
            v.close()

    # ---------------------------------------------------------------- writing
    def writer(self, header: SetHeader, **kwargs: Any) -> SetWriter:
        """A journal writer for a set (registers the header first)."""
        self.register(header)
        return SetWriter(self, header, **kwargs)

    # ---------------------------------------------------------------- compaction
    def compact(self, keys: Iterable[str] | None = None, *, drop: Iterable[str] = ()) -> list[str]:
        """Fold journal parts into a new ``features.h5`` and rename it into place.

        Rows are written sorted by clip id, so the result does not depend on how the work was
        split into runs, parts or shards. Parts are deleted only after the rename.

        Args:
            keys: sets to compact (default: every set with journal entries).
            drop: sets to remove from the store entirely.

        Returns:
            The keys that were compacted.
        """
        self.check_schema()
        drop = set(drop)
        all_headers = self.headers()
        with_journal = [k for k in all_headers if (self.journal / k).is_dir()]
        # a set without journal entries has nothing to fold: it is never rewritten
        keys = [k for k in (with_journal if keys is None else keys)
                if k not in drop and k in with_journal]
        drop = {k for k in drop if k in all_headers}
        if not keys and not drop:
            return []
        self.workdir.mkdir(parents=True, exist_ok=True)
        absorbed: list[Path] = []
        need = (_size(self.path) + sum(_size(p) for k in keys for p in self._part_paths(k)))
        with atomic_h5(self.path, reserve=int(need * 1.05) + (1 << 20)) as out:
            # every header once more at the head of the file, before any data: a truncated
            # store still tells `verify --repair` what its sets were
            kept = {k: json.loads(h.to_json()) for k, h in all_headers.items() if k not in drop}
            out.attrs["headers"] = json.dumps(kept, sort_keys=True)
            sets = out.create_group("sets")
            if self.path.exists():
                with open_read(self.path) as old:
                    for k in old.get("sets", {}).keys():
                        if k not in keys and k not in drop:
                            old.copy(old[f"sets/{k}"], sets, name=k)
            for k in keys:
                view = self._view(k)
                try:
                    _write_set(sets, all_headers[k], view)
                finally:
                    view.close()
                absorbed += self._part_paths(k)
        for p in absorbed:
            p.unlink(missing_ok=True)
        for k in keys:
            jd = self.journal / k
            if (jd / "set.json").exists():
                (jd / "set.json").unlink()
            _remove_empty_dir(jd)
        for k in drop:
            self._catalog_put(None, remove=k)
            jd = self.journal / k
            if jd.is_dir():
                for p in jd.iterdir():
                    p.unlink()
                jd.rmdir()
        _remove_empty_dir(self.journal)
        log.info("compacted %d feature set(s) into %s", len(keys), self.path)
        return list(keys)

    def temporary_files(self) -> list[Path]:
        """Temporary files of writers (left behind when one was killed), sorted."""
        out: list[Path] = []
        dirs = [self.workdir, *(self.journal.iterdir() if self.journal.is_dir() else [])]
        for d in dirs:
            if d.is_dir():
                out += [p for p in d.iterdir() if p.name.endswith(".tmp")]
        return sorted(out)

    def clean_temporary(self) -> int:
        """Delete temporary files left by killed writers (the caller holds the lock)."""
        n = 0
        for p in self.temporary_files():
            p.unlink(missing_ok=True)
            n += 1
        return n


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _remove_empty_dir(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass


def _write_set(parent: h5py.Group, header: SetHeader, view: _SetView) -> None:
    """Write one set's latest records, sorted by clip id, block by block."""
    g = parent.create_group(header.key)
    g.attrs["header"] = header.to_json()
    g.attrs["schema_version"] = SCHEMA_VERSION
    g.attrs["name"] = header.name
    g.attrs["spec"] = header.spec
    g.attrs["config_hash"] = header.config_hash
    done = sorted(c for c, r in view.records.items() if r.reason is None)
    n = len(done)
    g.create_dataset("ids", data=np.array(done, dtype=object), dtype=_STR)
    g.create_dataset("hashes", data=np.array([view.records[c].hash for c in done], dtype=object),
                     dtype=_STR)
    failed = sorted(c for c, r in view.records.items() if r.reason is not None)
    fg = g.create_group("failures")
    fg.create_dataset("ids", data=np.array(failed, dtype=object), dtype=_STR)
    fg.create_dataset("hashes", data=np.array([view.records[c].hash for c in failed], dtype=object),
                      dtype=_STR)
    fg.create_dataset("reasons", data=np.array([view.records[c].reason for c in failed],
                                                dtype=object), dtype=_STR)
    note_ids = sorted(c for c in view.notes if c in view.records)
    ng = g.create_group("notes")
    flat = [(c, t) for c in note_ids for t in view.notes[c]]
    ng.create_dataset("ids", data=np.array([c for c, _ in flat], dtype=object), dtype=_STR)
    ng.create_dataset("texts", data=np.array([t for _, t in flat], dtype=object), dtype=_STR)
    fields = g.create_group("fields")
    for name, spec in header.fields.items():
        if spec.ragged:
            node = fields.create_group(name)
            lengths = _ragged_lengths(view, name, done)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            node.create_dataset("offsets", data=offsets, fletcher32=True)
            total = int(offsets[-1])
            data = node.create_dataset(
                "data", shape=(total, *spec.shape), dtype=spec.dtype, fletcher32=bool(total),
                chunks=(max(1, min(total, _frame_chunk(spec))), *spec.shape) if total else None)
            for lo, hi in row_blocks(lengths * _frame_bytes(spec), COMPACT_BLOCK_BYTES):
                arrs = _gather(view, name, spec, done[lo:hi])
                if int(offsets[hi] - offsets[lo]):
                    data[offsets[lo]:offsets[hi]] = np.concatenate(arrs)
        else:
            chunk_rows = max(1, min(n, _row_chunk(spec)))
            ds = fields.create_dataset(
                name, shape=(n, *spec.shape), dtype=spec.dtype, fletcher32=bool(n),
                chunks=(chunk_rows, *_chunk_tail(spec)) if n else None)
            for lo, hi in row_blocks(np.full(n, _frame_bytes(spec)), COMPACT_BLOCK_BYTES):
                ds[lo:hi] = _gather(view, name, spec, done[lo:hi])
        for ak, av in spec.attrs.items():
            (fields[name]).attrs[ak] = json.dumps(av)


def row_blocks(row_bytes: np.ndarray, budget: int, *, max_rows: int = _ROW_BLOCK
               ) -> list[tuple[int, int]]:
    """Consecutive ``(lo, hi)`` row ranges whose bytes stay within ``budget``.

    Each block holds at least one row (a row larger than the budget is a block of its own)
    and at most ``max_rows`` rows.

    Example:
        >>> row_blocks(np.array([4, 4, 4, 10, 1]), 8)
        [(0, 2), (2, 3), (3, 4), (4, 5)]
    """
    blocks: list[tuple[int, int]] = []
    lo, used = 0, 0
    for i, size in enumerate(np.asarray(row_bytes, dtype=np.int64).tolist()):
        if i > lo and (used + size > budget or i - lo >= max_rows):
            blocks.append((lo, i))
            lo, used = i, 0
        used += size
    if lo < len(row_bytes):
        blocks.append((lo, len(row_bytes)))
    return blocks


def _frame_bytes(spec: FieldSpec) -> int:
    """Bytes of one fixed row, or of one frame of a ragged row."""
    return int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize


def _ragged_lengths(view: _SetView, name: str, ids: Sequence[str]) -> np.ndarray:
    """Frames of each of ``ids`` in a ragged field, read from the sources' offsets only."""
    per_source: dict[int, np.ndarray] = {}
    out = np.zeros(len(ids), dtype=np.int64)
    for i, cid in enumerate(ids):
        r = view.records[cid]
        if r.source not in per_source:
            per_source[r.source] = view.sources[r.source].lengths(name)
        out[i] = per_source[r.source][r.row]
    return out


def _checked(parent: h5py.Group, name: str, data: np.ndarray) -> None:
    """A data set with a Fletcher-32 checksum per chunk: flipped bytes fail the read."""
    parent.create_dataset(name, data=data, fletcher32=data.size > 0)


def _row_chunk(spec: FieldSpec) -> int:
    # ~256 KiB chunks; for (layers, dim) rows a chunk holds one layer of many rows
    tail = int(np.prod(_chunk_tail(spec))) * np.dtype(spec.dtype).itemsize
    return max(1, (256 * 1024) // max(1, tail))


def _chunk_tail(spec: FieldSpec) -> tuple[int, ...]:
    if len(spec.shape) >= 2:
        return (1, *spec.shape[1:])  # one layer per chunk: a layer reads without the others
    return spec.shape


def _frame_chunk(spec: FieldSpec) -> int:
    row = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    return max(1, (256 * 1024) // max(1, row))


def _gather(view: _SetView, name: str, spec: FieldSpec, ids: Sequence[str]
            ) -> np.ndarray | list[np.ndarray]:
    """Rows of ``ids`` from their sources; contiguous runs are read as slices."""
    recs = [view.records[c] for c in ids]
    out: list[Any] = [None] * len(ids)
    by_source: dict[int, list[tuple[int, int]]] = {}
    for i, r in enumerate(recs):
        by_source.setdefault(r.source, []).append((r.row, i))
    for si, pairs in by_source.items():
        pairs.sort()
        # one read per run of consecutive rows: only the rows asked for are read, so a block's
        # memory is its own bytes even when a source's rows are spread over the file
        start = 0
        for k in range(1, len(pairs) + 1):
            if k < len(pairs) and pairs[k][0] == pairs[k - 1][0] + 1:
                continue
            lo, hi = pairs[start][0], pairs[k - 1][0] + 1
            rows = view.sources[si].read_rows(name, spec, lo, hi)
            for row, i in pairs[start:k]:
                out[i] = rows[row - lo]
            start = k
    if spec.ragged:
        return out
    if not out:
        return np.zeros((0, *spec.shape), dtype=spec.dtype)
    return np.stack(out).astype(spec.dtype, copy=False)


# --------------------------------------------------------------------------------------------
class SetWriter:
    """Buffers finished rows of one set and writes them as atomic journal parts.

    A row counts as stored once :meth:`flush` returns. Use as a context manager: leaving the
    block flushes what is buffered, also when an exception (Ctrl-C) is on its way.

    Args:
        store: the store.
        header: the set's header (already registered).
        flush_rows: write a part when this many records are buffered.
        flush_bytes: ... or when the buffered arrays exceed this many bytes.
        flush_seconds: ... or when the oldest buffered record is this old.
    """

    def __init__(self, store: FeatureStore, header: SetHeader, *, flush_rows: int = 256,
                 flush_bytes: int = 64 << 20, flush_seconds: float = 30.0,
                 auto_flush: bool = True) -> None:
        self.store = store
        self.header = header
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        self.flush_seconds = flush_seconds
        self.auto_flush = auto_flush  # False: the caller flushes at its own boundaries (batches)
        self._rows: list[tuple[str, str, dict[str, np.ndarray]]] = []
        self._fails: list[tuple[str, str, str]] = []
        self._notes: list[tuple[str, str]] = []
        self._bytes = 0
        self._since = time.monotonic()
        self._seq = 0
        self.rows_written = 0
        self.failures_written = 0

    def __enter__(self) -> SetWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()

    def add(self, clip_id: str, content_hash: str, values: dict[str, np.ndarray]) -> None:
        """Buffer one clip's values (every field of the header, shapes checked)."""
        row = {}
        for name, spec in self.header.fields.items():
            if name not in values:
                raise ValueError(f"clip {clip_id}: extractor gave no value for field {name!r}")
            a = np.asarray(values[name])
            expect = spec.shape if not spec.ragged else spec.shape
            got = a.shape[1:] if spec.ragged else a.shape
            if tuple(got) != tuple(expect):
                raise ValueError(f"clip {clip_id}: field {name!r} has shape {a.shape}, "
                                 f"expected {'(T, ' if spec.ragged else '('}{expect})")
            row[name] = a.astype(spec.dtype, copy=False)
            self._bytes += row[name].nbytes
        self._rows.append((clip_id, content_hash, row))
        self._maybe_flush()

    def fail(self, clip_id: str, content_hash: str, reason: str) -> None:
        """Record that a clip failed, with the reason (shown by ``verify`` and reports)."""
        self._fails.append((clip_id, content_hash, reason))
        self._maybe_flush()

    def note(self, clip_id: str, text: str) -> None:
        """Record a warning about a clip (it is still stored)."""
        self._notes.append((clip_id, text))

    def due(self) -> bool:
        """True when the buffer has reached a flush threshold (rows, bytes or age)."""
        n = len(self._rows) + len(self._fails)
        return (n >= self.flush_rows or self._bytes >= self.flush_bytes
                or (n > 0 and time.monotonic() - self._since >= self.flush_seconds))

    def _maybe_flush(self) -> None:
        if self.auto_flush and self.due():
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._rows) + len(self._fails)

    def flush(self) -> None:
        """Write the buffered records as one part: temporary name, fsync, rename.

        Raises:
            OSError: the part could not be written (e.g. disk full). Nothing partial remains;
                the buffered records stay buffered so a later flush can retry.
        """
        if not self._rows and not self._fails and not self._notes:
            return
        d = self.store.journal / self.header.key
        d.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        name = part_name(self._seq)
        rows = sorted(self._rows, key=lambda r: r[0])
        try:
            with atomic_h5(d / name, reserve=int(self._bytes * 1.05) + (256 << 10)) as f:
                f.attrs["key"] = self.header.key
                f.attrs["config_hash"] = self.header.config_hash
                f.create_dataset("ids", data=np.array([r[0] for r in rows], dtype=object), dtype=_STR)
                f.create_dataset("hashes", data=np.array([r[1] for r in rows], dtype=object),
                                 dtype=_STR)
                fg = f.create_group("fields")
                for fname, spec in self.header.fields.items():
                    arrs = [r[2][fname] for r in rows]
                    if spec.ragged:
                        node = fg.create_group(fname)
                        lengths = [len(a) for a in arrs]
                        _checked(node, "offsets", np.concatenate([[0], np.cumsum(lengths)]
                                                                 ).astype(np.int64))
                        _checked(node, "data", np.concatenate(arrs) if arrs and sum(lengths)
                                 else np.zeros((0, *spec.shape), spec.dtype))
                    else:
                        _checked(fg, fname, np.stack(arrs) if arrs
                                 else np.zeros((0, *spec.shape), spec.dtype))
                failg = f.create_group("failures")
                for i, col in enumerate(("ids", "hashes", "reasons")):
                    failg.create_dataset(col, data=np.array([x[i] for x in self._fails], dtype=object),
                                         dtype=_STR)
                ng = f.create_group("notes")
                ng.create_dataset("ids", data=np.array([x[0] for x in self._notes], dtype=object),
                                  dtype=_STR)
                ng.create_dataset("texts", data=np.array([x[1] for x in self._notes], dtype=object),
                                  dtype=_STR)
        except BaseException:
            self._seq -= 1
            raise
        self.rows_written += len(self._rows)
        self.failures_written += len(self._fails)
        log.debug("stored part %s: %d rows, %d failures", name, len(self._rows), len(self._fails))
        self._rows, self._fails, self._notes = [], [], []
        self._bytes = 0
        self._since = time.monotonic()
