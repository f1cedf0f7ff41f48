"""``verify``: is every feature set complete, readable and consistent with the audio on disk?"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.hints import extract_command, storage_flags, workdir_command
from extract.store import FeatureStore, SetHeader, StoreError, open_read

log = logging.getLogger(__name__)


@dataclass
class SetCheck:
    key: str
    spec: str
    storage: dict = field(default_factory=dict)  # extract flags that store it again (data.hints)
    rows: int = 0
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)       # stored hash != audio on disk
    audio_missing: list[str] = field(default_factory=list)  # stored row kept, audio unreadable
    unreadable: list[str] = field(default_factory=list)  # problems reading values
    nonfinite_rows: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.failed or self.stale or self.unreadable
                    or self.audio_missing)


@dataclass
class VerifyReport:
    workdir: Path
    store_problems: list[str] = field(default_factory=list)
    damaged_files: list[Path] = field(default_factory=list)  # compacted files HDF5 cannot open
    damaged_parts: list[Path] = field(default_factory=list)
    hash_check: str = "not run"
    catalog_problem: str | None = None   # sets.json missing or lacking sets (repair rewrites it)
    leftovers: list[Path] = field(default_factory=list)  # temporary files of killed writers
    single_file: Path | None = None  # a single-file store (older layout), read as it is
    sets: list[SetCheck] = field(default_factory=list)
    corpus_size: int | None = None

    @property
    def ok(self) -> bool:
        return not self.store_problems and all(s.ok for s in self.sets)

    @property
    def damaged_store(self) -> bool:
        """A compacted file (a set's file, or the single-file store) cannot be opened."""
        return bool(self.damaged_files)

    def lines(self, max_list: int = 20) -> list[str]:
        out = [f"store {self.workdir}: {'OK' if self.ok else 'PROBLEMS'}"]
        out.append(f"  hash check: {self.hash_check}")
        out += [f"  problem: {p}" for p in self.store_problems]
        if self.leftovers:
            mb = sum(p.stat().st_size for p in self.leftovers if p.exists()) / 1e6
            out.append(f"  note: {len(self.leftovers)} temporary file(s) of a killed writer "
                       f"({mb:.1f} MB, e.g. {self.leftovers[0]}); the next extract removes them")
        if self.single_file is not None:
            out.append(f"  note: {self.single_file} is a single-file store (an older layout); it "
                       f"is read as it is, and the next extract that computes anything moves "
                       f"each set into its own file, features/<key>.h5 (once; it needs about "
                       f"its size free)")
        for s in self.sets:
            out.append(f"{s.key} ({s.spec}): {s.rows} rows"
                       + (f" of {self.corpus_size} clips" if self.corpus_size is not None else "")
                       + (" OK" if s.ok else ""))
            if s.nonfinite_rows:
                out.append(f"  note: {s.nonfinite_rows} row(s) hold NaN/Inf values")
            for label, items in (("missing", s.missing), ("stale (audio changed since extraction)",
                                                          s.stale), ("unreadable", s.unreadable),
                                ("audio missing (stored row kept; restore the audio)",
                                 s.audio_missing)):
                if items:
                    out.append(f"  {len(items)} {label}: " + ", ".join(items[:max_list])
                               + (" ..." if len(items) > max_list else ""))
            if s.failed:
                out.append(f"  {len(s.failed)} failed:")
                for cid, reason in sorted(s.failed.items())[:max_list]:
                    out.append(f"    {cid}: {reason}")
            if s.missing or s.failed or s.stale or s.unreadable:
                out.append(f"  fix: `{extract_command(self.workdir, s.spec, **s.storage)}` "
                           f"(only missing, failed and stale clips are computed)")
        return out


def verify_store(store: FeatureStore, *, check_hashes: bool = True, deep: bool = False
                 ) -> VerifyReport:
    """Check every set of a store; never modifies anything (but the hash cache).

    Args:
        store: the store.
        check_hashes: compare each stored row's content hash with the clip's file.
        deep: read every audio file again to hash it; otherwise a file whose size and mtime
            did not change keeps its cached hash. ``report.hash_check`` says which ran.
    """
    from data.workdir import load_corpus_ref, open_corpus
    from extract.run import clip_hashes

    report = VerifyReport(store.workdir)
    report.leftovers = store.temporary_files()
    for path in store.compacted_files():
        try:
            with open_read(path):
                pass
        except OSError as exc:
            what = ("every set" if path == store.path else "its set")
            report.store_problems.append(
                f"{path} cannot be opened by HDF5 ({exc}); "
                f"`{workdir_command('verify', store.workdir, '--repair')}` moves it aside "
                f"and recomputes {what} from the journal and the audio")
            report.damaged_files.append(path)
    if report.damaged_files:
        return report
    if store.path.exists():
        report.single_file = store.path
    for p in sorted(store.workdir.glob("features.journal/*/part-*.h5")):
        try:
            with open_read(p) as f:
                f["ids"][()]
        except (OSError, KeyError) as exc:
            report.store_problems.append(f"journal part {p} is damaged ({exc}); "
                                         f"`{workdir_command('verify', store.workdir, '--repair')}` "
                                         f"moves it aside and recomputes its rows")
            report.damaged_parts.append(p)
    corpus = None
    if load_corpus_ref(store.workdir) is not None:
        try:
            corpus = open_corpus(store.workdir)
            report.corpus_size = len(corpus)
        except Exception as exc:  # corpus moved: verify the store alone
            report.store_problems.append(f"corpus of this workdir cannot be read: {exc}")
    current: dict[str, str] = {}
    unreadable_audio: dict[str, str] = {}
    if corpus is not None and check_hashes:
        current, unreadable_audio = clip_hashes(
            {c: str(p) for c, p in corpus.clips["path"].items()}, store.workdir, deep=deep,
            spans=corpus.spans())
        report.hash_check = ("content of every audio file rehashed (--deep)" if deep else
                             "audio files whose size and mtime changed rehashed; others use "
                             "the cached hash (--deep rehashes all)")
    problem = store.catalog_problem()
    if problem:
        report.catalog_problem = problem
        report.store_problems.append(f"{problem}; `{workdir_command('verify', store.workdir, '--repair')}` "
                                     f"rewrites it from the store")
    try:
        keys = store.keys()
    except StoreError as exc:
        report.store_problems.append(str(exc))
        return report
    for key in keys:
        h = store.header(key)
        chk = SetCheck(key, h.spec, storage_flags(h.config))
        try:
            done, failed = store.status(key)
        except StoreError as exc:
            chk.unreadable.append(str(exc))
            report.sets.append(chk)
            continue
        chk.rows = len(done)
        chk.failed = {c: r for c, (_, r) in failed.items()}
        ids = sorted(done)
        for name, spec in h.fields.items():
            try:
                if spec.ragged:
                    for lo in range(0, len(ids), 512):
                        for a in store.read_sequences(key, name, ids[lo:lo + 512]):
                            if a is not None and not np.isfinite(a).all():
                                chk.nonfinite_rows += 1
                else:
                    for lo in range(0, len(ids), 4096):
                        X, present = store.read(key, name, ids[lo:lo + 4096])
                        if not present.all():
                            chk.unreadable.append(f"{name}: {int((~present).sum())} rows absent")
                        if X.dtype.kind == "f":
                            chk.nonfinite_rows += int((~np.isfinite(X.reshape(len(X), -1))).any(1).sum())
            except Exception as exc:
                chk.unreadable.append(f"field {name}: {type(exc).__name__}: {exc}")
        if corpus is not None:
            chk.missing = sorted(c for c in corpus.clips.index if c not in done and c not in failed)
            if current:
                chk.stale = sorted(c for c, hsh in done.items() if c in current and current[c] != hsh)
            chk.audio_missing = sorted(c for c in done if c in unreadable_audio)
        report.sets.append(chk)
    return report


@dataclass
class RepairSummary:
    """What ``verify --repair`` did: every set it knew of is in ``recomputed`` or ``skipped``."""

    quarantined: list[str] = field(default_factory=list)
    recomputed: dict[str, int] = field(default_factory=dict)
    still_failed: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)     # key -> why it was not repaired
    headers_from: dict[str, str] = field(default_factory=dict)  # key -> where its header came from
    catalog_added: list[str] = field(default_factory=list)
    refused: str | None = None  # nothing was touched, and why


_KEY_RE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_.+-]*-[0-9a-f]{12}(?![0-9a-f])")


def headers_in_damaged_file(path: Path) -> tuple[dict[str, SetHeader], set[str]]:
    """Set headers still legible in the bytes of a file HDF5 cannot open, and set keys seen.

    Each set's header is stored as one JSON string attribute, so it survives byte for byte
    wherever that part of the file survived. Keys are the ``<name>-<hash12>`` strings (group
    names); a key without a legible header can be named but not rebuilt.
    """
    headers: dict[str, SetHeader] = {}
    keys: set[str] = set()
    try:
        data = path.read_bytes() if path.stat().st_size < (1 << 31) else b""
    except OSError:
        return headers, keys
    decoder = json.JSONDecoder()
    for m in re.finditer(rb'\{"config": ', data):
        text = data[m.start():m.start() + (4 << 20)].decode("utf-8", "replace")
        try:
            obj, _ = decoder.raw_decode(text)
            h = SetHeader.from_json(json.dumps(obj))
        except (ValueError, KeyError, TypeError):
            continue
        headers[h.key] = h
    from extract.base import BUILTIN_MODULES, EXTRACTORS

    kinds = set(BUILTIN_MODULES) | set(EXTRACTORS)
    for m in _KEY_RE.finditer(data):
        k = m.group().decode("ascii", "replace")
        if k.split("-", 1)[0] in kinds:
            keys.add(k)
    return headers, keys | set(headers)


def _options_from(prov: dict):
    from extract.base import ExtractOptions

    raw = dict(prov.get("options") or {})
    for k in ("layers", "poolings", "frames_layers"):
        if raw.get(k) is not None:
            raw[k] = tuple(raw[k])
    known = set(ExtractOptions.__dataclass_fields__)
    return ExtractOptions(**{k: v for k, v in raw.items() if k in known})


def repair_store(store: FeatureStore, report: VerifyReport, *, workers: int | None = None,
                 progress=None) -> RepairSummary:
    """Fix what :func:`verify_store` found, recomputing only what is needed.

    The corpus is opened first: when it cannot be read nothing is moved or recomputed
    (``summary.refused`` says why). Damaged files are moved aside (never deleted): an
    unreadable set file ``features/<key>.h5`` becomes ``features/<key>.h5.damaged-<time>`` (a
    single-file store ``features.h5`` likewise), a damaged journal part ``damaged-<name>``;
    only the sets they held are recomputed (every set, for a single-file store). Every set's header is looked for in ``sets.json``, the journal, the
    store and the bytes of a damaged file (``summary.headers_from`` says where it was found);
    then every set with missing, failed, stale or lost rows is extracted again with the
    options it was made with; rows that are good are reused, not recomputed. A set that cannot
    be rebuilt is in ``summary.skipped`` with the reason. ``sets.json`` is rewritten from what
    was found. The caller holds the workdir lock.
    """
    import dataclasses
    import os
    import time

    from data.workdir import open_corpus
    from extract.run import extract_corpus, prepare_extractor

    out = RepairSummary()
    try:
        corpus = open_corpus(store.workdir)
    except Exception as exc:  # noqa: BLE001  # any reason: say it, touch nothing
        try:  # re-extracting a stored set computes nothing but records the corpus
            first = next(iter(store.catalog().values()), None)
        except Exception:  # noqa: BLE001
            first = None
        again = (extract_command(store.workdir, first.spec, root="NEW_ROOT",
                                 **storage_flags(first.config)) if first is not None else
                 extract_command(store.workdir, "opensmile:eGeMAPSv02", root="NEW_ROOT"))
        out.refused = (f"the corpus of {store.workdir} cannot be read ({exc}); nothing was moved "
                       f"or recomputed. Restore it, or record its new place (NEW_ROOT) by running "
                       f"`{again}`, "
                       f"then `{workdir_command('verify', store.workdir, '--repair')}` again")
        return out
    found: dict[str, SetHeader] = {}
    for k, h in store.catalog().items():
        found[k] = h
        out.headers_from[k] = "sets.json"
    lost_all = False                 # the single-file store was damaged: every set lost rows
    lost_keys: set[str] = set()      # sets that lost rows with a damaged file or part
    named: set[str] = set()          # keys legible in damaged bytes (a header may not be)
    for path in report.damaged_files:
        if not path.exists():
            continue
        legible, keys_seen = headers_in_damaged_file(path)
        named |= keys_seen
        for k, h in legible.items():
            if k not in found:
                found[k] = h
                out.headers_from[k] = f"the bytes of the damaged {path.name}"
        if path == store.path:
            lost_all = True
        else:  # WORKDIR/features/<key>.h5: its name says its set
            lost_keys.add(path.name[:-3])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in report.damaged_files:
        if path.exists():
            aside = path.with_name(f"{path.name}.damaged-{stamp}")
            os.replace(path, aside)
            out.quarantined.append(str(aside))
    for p in report.damaged_parts:
        aside = p.with_name(f"damaged-{p.name}")
        os.replace(p, aside)
        out.quarantined.append(str(aside))
        lost_keys.add(p.parent.name)
    lost_store = bool(out.quarantined)
    try:
        for k, h in store.headers().items():
            if k not in found:
                found[k] = h
                out.headers_from[k] = "the store"
    except StoreError:
        pass
    other_problems = [p for p in report.store_problems
                      if report.catalog_problem is None or report.catalog_problem not in p]
    if other_problems and not lost_store:
        return out  # e.g. another schema version: never touched
    needs = {s.key for s in report.sets if not s.ok} | lost_keys
    if lost_all:
        needs |= set(found)
    for k in sorted((named | lost_keys) - set(found)):
        out.skipped[k] = ("its header was only in a damaged file and sets.json does not "
                          "have it, so its configuration is unknown; extract it again with "
                          f"`{extract_command(store.workdir, 'SPEC')}` (SPEC: the extractor "
                          "spec its name tells, e.g. opensmile:eGeMAPSv02)")
    needs -= set(out.skipped)
    for key in sorted(needs):
        header = found.get(key)
        if header is None:
            out.skipped[key] = "no header recorded for this set"
            continue
        options = _options_from(header.provenance)
        if workers is not None:
            options = dataclasses.replace(options, workers=workers)
        try:
            ex, new_header = prepare_extractor(header.spec, options)
        except Exception as exc:
            out.skipped[key] = f"cannot rebuild the extractor: {exc}"
            continue
        if new_header.key != key:
            out.skipped[key] = (f"this environment makes key {new_header.key}, not {key} "
                                f"(a library or model changed); extract again into a new set")
            continue
        s = extract_corpus(store, corpus, header.spec, options=options,
                           prepared=(ex, new_header), progress=progress)
        out.recomputed[key] = s.computed
        if s.failed:
            out.still_failed[key] = s.failed
    out.catalog_added = store.rebuild_catalog({k: found[k] for k in found if k not in out.skipped})
    return out
