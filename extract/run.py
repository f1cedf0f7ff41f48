"""extract_corpus(): the resumable, crash-safe extraction loop.

For one feature spec over one corpus:

1. resolve the extractor (fails before the store is touched), compute its key;
2. hash every clip's audio file (cached by path, size and mtime in the workdir);
3. skip clips whose stored row has the same content hash; everything else is to do;
4. compute (per-clip extractors in worker processes that also decode; batched extractors in
   this process, fed by decoding workers), writing finished rows to the journal in parts;
5. compact the set's journal into its own file, ``features/<key>.h5``.

A failing clip is recorded with its reason and the loop goes on. Ctrl-C / SIGTERM flush what is
finished before leaving; kill -9 loses at most the rows not yet flushed.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import multiprocessing as mp
import os
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.audio import AudioError, clip_seconds, file_hash, load_audio, segment_hash
from data.corpus import Corpus
from extract.base import (SAMPLE_RATE, ExtractOptions, Extractor, build_extractor, config_hash)
from extract.store import SCHEMA_VERSION, FeatureStore, SetHeader, config_differences

log = logging.getLogger(__name__)

HASH_CACHE = "hash_cache.json"
_STOP = threading.Event()


def request_stop() -> None:
    """Ask a running :func:`extract_corpus` to stop before it stores another clip.

    Signal handlers call this before raising ``KeyboardInterrupt``: an exception raised while
    native code calls back into Python (openSMILE's ctypes sink) is swallowed there and turns
    into a wrong result or a failed clip. With the request set, the clip being computed is
    neither stored nor recorded as failed, and the run stops as interrupted.
    """
    _STOP.set()


def stop_requested() -> bool:
    """True once a stop was requested (it stays set until the next run clears it)."""
    return _STOP.is_set()


def _stop_point(what: str) -> None:
    """Leave now, as interrupted, when a stop was requested (after ``what`` is complete)."""
    if _STOP.is_set():
        raise KeyboardInterrupt(f"stop requested; stopped after {what}")


Progress = Callable[[int, float], None]


@dataclass
class ExtractSummary:
    """What one extraction run did."""

    key: str
    spec: str
    total: int
    reused: int = 0
    computed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)  # audio unreadable now, stored row kept
    warnings: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    audio_seconds: float = 0.0

    @property
    def audio_s_per_s(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0


def prepare_extractor(spec: str, options: ExtractOptions) -> tuple[Extractor, SetHeader]:
    """Build and resolve the extractor of a spec and the header of its feature set.

    Raises:
        ValueError: bad option; ExtractorUnavailable: cannot run here (before any store I/O).
    """
    ex = build_extractor(spec, options)
    ex.resolve()
    identity = ex.identity()
    h = config_hash(identity, SCHEMA_VERSION)
    header = SetHeader(key=f"{ex.readable_name()}-{h}", name=ex.readable_name(), spec=spec,
                       config=identity, config_hash=h, fields=ex.fields(),
                       provenance=_base_provenance() | ex.provenance()
                       | {"options": dataclasses.asdict(options)})
    return ex, header


def _base_provenance() -> dict[str, Any]:
    import h5py

    return {"python": platform.python_version(), "numpy": np.__version__,
            "h5py": h5py.__version__, "host": socket.gethostname(),
            "schema_version": SCHEMA_VERSION}


# --------------------------------------------------------------------------------------------
def shard_of(clip_id: str, n: int) -> int:
    """Deterministic shard (0..n-1) of a clip id: stable across runs, machines and corpora."""
    return int.from_bytes(hashlib.blake2b(clip_id.encode(), digest_size=8).digest(), "big") % n


def clip_hashes(paths: dict[str, str], workdir: Path, *, threads: int = 4, deep: bool = False,
                spans: dict[str, tuple[float | None, float | None]] | None = None
                ) -> tuple[dict[str, str], dict[str, str]]:
    """Content hash of every clip, reusing a cache of file hashes keyed by (path, size, mtime).

    Each file is hashed once however many segments it holds; a segment's hash covers file,
    start and end (``data.audio.segment_hash``; a whole file's hash is its file hash).

    ``deep`` ignores the cache and reads every file again (the cache is refreshed).

    Returns:
        (hashes: id -> hash, errors: id -> reason) for files that cannot be read.
    """
    cache_path = workdir / HASH_CACHE
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    except ValueError:
        cache = {}
    hashes: dict[str, str] = {}
    errors: dict[str, str] = {}
    todo: list[tuple[str, str, list]] = []
    waiting: dict[str, list[str]] = {}  # path -> clips waiting for its hash
    for cid, p in paths.items():
        try:
            st = os.stat(p)
        except OSError as exc:
            errors[cid] = f"{p}: {exc.strerror or exc}; check the path or restore the file"
            continue
        sig = [st.st_size, st.st_mtime_ns]
        hit = None if deep else cache.get(p)
        if hit and hit[:2] == sig:
            hashes[cid] = hit[2]
            continue
        if p not in waiting:
            todo.append((cid, p, sig))
        waiting.setdefault(p, []).append(cid)

    def one(item: tuple[str, str, list]) -> tuple[str, str, list, str | None, str | None]:
        cid, p, sig = item
        try:
            return cid, p, sig, file_hash(p), None
        except (OSError, AudioError) as exc:  # a folder named *.wav, a file deleted meanwhile
            return cid, p, sig, None, str(exc) if isinstance(exc, AudioError) else f"{p}: {exc}"

    if todo:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for cid, p, sig, h, err in pool.map(one, todo):
                for c in waiting[p]:
                    if h is None:
                        errors[c] = err or p
                    else:
                        hashes[c] = h
                if h is not None:
                    cache[p] = [*sig, h]
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_path)
    for cid, (start, end) in (spans or {}).items():
        if cid in hashes:
            hashes[cid] = segment_hash(hashes[cid], start, end)
    return hashes, errors


def clip_error(path: str, exc: BaseException) -> str:
    """The reason recorded for a failed clip: always names the file."""
    if isinstance(exc, AudioError):
        return str(exc)
    return f"{path}: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# worker-process side (module level so that it pickles)
_WORKER: dict[str, Any] = {}


def _init_worker(spec: str, options: ExtractOptions) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C does
    ex = build_extractor(spec, options)
    ex.resolve()
    _WORKER["ex"] = ex
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _per_clip_task(item: tuple) -> tuple[str, dict | None, str | None, list[str], int]:
    cid, path, start, end = (*item, None, None)[:4]  # (id, path[, start, end]): a segment
    ex: Extractor = _WORKER["ex"]
    try:
        x = load_audio(path, sample_rate=SAMPLE_RATE, start=start, end=end)
        values = ex.compute(x)
        return cid, values, None, ex.warnings_for(len(x)), len(x)
    except Exception as exc:  # one bad clip never sinks the corpus
        return cid, None, clip_error(path, exc), [], 0


def decode_task(items: list[tuple]) -> list[tuple[str, np.ndarray | None, str | None]]:
    out = []
    for item in items:
        cid, path, start, end = (*item, None, None)[:4]  # (id, path[, start, end]): a segment
        try:
            out.append((cid, load_audio(path, sample_rate=SAMPLE_RATE, start=start, end=end), None))
        except Exception as exc:
            out.append((cid, None, clip_error(path, exc)))
    return out


# --------------------------------------------------------------------------------------------
def extract_corpus(
    store: FeatureStore,
    corpus: Corpus,
    spec: str,
    *,
    options: ExtractOptions | None = None,
    ids: Sequence[str] | None = None,
    progress: Progress | None = None,
    on_start: Callable[[int, float], None] | None = None,
    prepared: tuple[Extractor, SetHeader] | None = None,
    compact: bool = True,
    flush_rows: int = 256,
) -> ExtractSummary:
    """Extract one feature set for the clips of a corpus, computing only what is missing.

    Args:
        store: the workdir's store (the caller holds the workdir lock).
        corpus: clip table (ids and absolute paths).
        spec: feature spec, e.g. ``opensmile:eGeMAPSv02``.
        options: extractor options (workers, layers, ...).
        ids: restrict to these clip ids (e.g. one shard); default all clips.
        progress: called with (clips, audio seconds) as clips finish.
        on_start: called once with (clips to do, their audio seconds) before computing.
        prepared: an already resolved (extractor, header), to avoid resolving twice.
        compact: compact the journal at the end.
        flush_rows: rows per journal part.

    Returns:
        An :class:`ExtractSummary`. Failed clips are in ``summary.failed``; nothing raises for
        a bad clip.
    """
    options = options or ExtractOptions()
    ex, header = prepared or prepare_extractor(spec, options)
    _STOP.clear()
    t0 = time.perf_counter()
    store.clean_temporary()
    paths = {cid: str(p) for cid, p in corpus.clips["path"].items()}
    if ids is not None:
        wanted = set(ids)
        paths = {c: p for c, p in paths.items() if c in wanted}
    summary = ExtractSummary(key=header.key, spec=spec, total=len(paths))
    spans = {c: sp for c, sp in corpus.spans().items() if c in paths}

    hashes, hash_errors = clip_hashes(paths, store.workdir, spans=spans)
    for cid, reason in corpus.clip_errors().items():  # refused by the reader, naming the row
        if cid in paths:
            hashes.pop(cid, None)
            hash_errors[cid] = reason
    done, failed_before = store.status(header.key)
    todo = [c for c in sorted(paths) if c in hashes and done.get(c) != hashes[c]]
    summary.reused = sum(1 for c in paths if c in hashes and done.get(c) == hashes[c])
    # A stored row is never replaced by a failure: a clip whose audio cannot be read now (a
    # deleted file, an unmounted corpus) keeps its row and is reported as kept.
    for cid, reason in hash_errors.items():
        if cid in done:
            summary.kept[cid] = reason
    hash_errors = {c: r for c, r in hash_errors.items() if c not in done}

    # Batched extractors flush whole batches only, and plan batches over every clip (done or
    # not), so a rerun after a kill computes each batch with exactly the clips an uninterrupted
    # run would have: the stored values are then identical, not merely close.
    _note_siblings(store, header)
    batched = ex.mode == "batched"
    universe = [c for c in sorted(paths) if c in hashes] if batched else todo
    with store.writer(header, flush_rows=flush_rows, auto_flush=not batched) as writer:
        for cid, reason in sorted(hash_errors.items()):
            if failed_before.get(cid) != ("", reason):  # the same failure is not written twice
                writer.fail(cid, "", reason)
            summary.failed[cid] = reason
        durations = {}
        for c in universe:
            try:
                durations[c] = clip_seconds(paths[c], *spans.get(c, ()))
            except Exception:  # decoded (and reported) later
                durations[c] = 0.0
        if on_start:
            on_start(len(todo), float(sum(durations[c] for c in todo)))
        log.info("%s: %d clips, %d stored already, %d to compute", header.key, len(paths),
                 summary.reused, len(todo))

        def record(cid: str, values: dict | None, err: str | None, warns: list[str], n: int) -> None:
            if _STOP.is_set():  # the clip may have been computed across the interruption
                raise KeyboardInterrupt(f"stop requested; {cid} not stored")
            if err is not None and cid in done:
                summary.kept[cid] = err  # stale row, but a failure never replaces it
                log.warning("audio unreadable, stored row kept: %s", err)
            elif err is not None:
                if failed_before.get(cid) != (hashes[cid], err):
                    writer.fail(cid, hashes[cid], err)
                summary.failed[cid] = err
                log.warning("failed: %s", err)
            else:
                writer.add(cid, hashes[cid], values or {})
                summary.computed += 1
                summary.audio_seconds += n / SAMPLE_RATE
                for w in warns:
                    writer.note(cid, w)
                    summary.warnings.setdefault(cid, []).append(w)
            if progress:
                progress(1, n / SAMPLE_RATE if err is None else durations.get(cid, 0.0))

        if todo:
            if ex.mode == "per_clip":
                _run_per_clip(ex, spec, options, todo, paths, record, spans)
            else:
                _run_batched(ex, options, universe, set(todo), paths, durations, record, writer,
                             spans)
    summary.seconds = time.perf_counter() - t0
    run_info = {"date": _dt.datetime.now().isoformat(timespec="seconds"),
                "computed": summary.computed, "failed": len(summary.failed),
                "seconds": round(summary.seconds, 3),
                "audio_seconds": round(summary.audio_seconds, 3),
                "audio_s_per_s": round(summary.audio_s_per_s, 2),
                "clips_per_s": round(summary.computed / summary.seconds, 2) if summary.seconds else 0,
                "workers": options.workers}
    if writer.rows_written or writer.failures_written:  # a no-op rerun rewrites nothing
        prov = store.header(header.key).provenance
        runs = list(prov.get("runs", []))[-19:] + [run_info]
        store.update_provenance(header.key, runs=runs, last_run=run_info,
                                **(header.provenance | ex.provenance()),
                                **({"corpus": corpus.meta} if corpus.meta else {}))
    _stop_point(f"storing the rows of {header.key}")
    if compact:
        try:
            store.compact([header.key])
        except OSError as exc:
            log.warning("compaction of %s failed (%s); rows stay safe in the journal and are "
                        "read from there; it is retried on the next run", header.key, exc)
        # A signal that arrives while HDF5 runs can be swallowed there ("Exception ignored
        # in ..."): the request flag, not the exception, decides.
        _stop_point(f"compacting {header.key}")
    return summary


def _note_siblings(store: FeatureStore, header: SetHeader) -> None:
    """Log that a new set shares its spec with stored ones (another pooling or layer of the
    same model is another set) and how commands tell them apart."""
    others = [h for k, h in store.headers().items() if k != header.key and h.spec == header.spec]
    if not others or header.key in store.headers():
        return
    differ = config_differences([header, *others])
    log.info("%s is stored already as %s; this extraction (%s) is a set of its own, %s. Commands "
             "pick the set that holds what they ask for (--pooling, --layer), or take a key.",
             header.spec, ", ".join(h.key for h in others),
             ", ".join(f"{k}={json.dumps(header.config.get(k))}" for k in differ), header.key)


def _run_per_clip(ex: Extractor, spec: str, options: ExtractOptions, todo: list[str],
                  paths: dict[str, str], record: Callable, spans: dict | None = None) -> None:
    items = [(c, paths[c], *(spans or {}).get(c, ())) for c in todo]
    if options.workers <= 1:
        _WORKER["ex"] = ex
        for item in items:
            record(*_per_clip_task(item))
        return
    # spawn: a fresh interpreter per worker, safe whatever threads this process runs (torch);
    # workers import only the extractor's own module.
    ctx = mp.get_context("spawn")
    with ctx.Pool(options.workers, initializer=_init_worker, initargs=(spec, options)) as pool:
        try:
            for result in pool.imap_unordered(_per_clip_task, items, chunksize=1):
                record(*result)
        except BaseException:
            pool.terminate()
            raise


def _run_batched(ex: Extractor, options: ExtractOptions, universe: list[str], todo: set[str],
                 paths: dict[str, str], durations: dict[str, float], record: Callable,
                 writer: Any, spans: dict | None = None) -> None:
    n_samples = [max(1, int(round(durations[c] * SAMPLE_RATE))) for c in universe]
    batches = [[universe[i] for i in b] for b in ex.plan_batches(n_samples)]
    batches = [b for b in batches if any(c in todo for c in b)]
    ex.load()
    jobs = [[(c, paths[c], *(spans or {}).get(c, ())) for c in b] for b in batches]

    def decoded() -> Iterator[list[tuple[str, np.ndarray | None, str | None]]]:
        # Decoding threads run ahead of the model (libsndfile and soxr release the GIL): no
        # process start-up, and on a small CPU no cores taken from the model for long.
        with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
            ahead = max(2, 2 * options.workers)
            futures = [pool.submit(decode_task, job) for job in jobs[:ahead]]
            for i in range(len(jobs)):
                if i + ahead < len(jobs):
                    futures.append(pool.submit(decode_task, jobs[i + ahead]))
                yield futures[i].result()
                futures[i] = None  # type: ignore[call-overload]  # free the decoded audio

    inputs: list[list[tuple[str, np.ndarray]]] = []  # batches handed to the extractor, in order

    def signals() -> Iterator[list[np.ndarray]]:
        for batch in decoded():
            good = [(c, x) for c, x, err in batch if err is None]
            for c, x, err in batch:
                if err is not None and c in todo:
                    record(c, None, err, [], 0)
            inputs.append(good)
            yield [x for _, x in good]

    # compute_stream may queue the next batch on the device before it returns this one's results
    for results in ex.compute_stream(signals()):
        good = inputs.pop(0)
        if good:
            for (c, x), res in zip(good, results):
                if c not in todo:
                    continue  # stored already; computed only to keep the batch as planned
                if isinstance(res, Exception):
                    record(c, None, clip_error(paths[c], res), [], 0)
                else:
                    record(c, res, None, ex.warnings_for(len(x)), len(x))
        if writer.due():
            writer.flush()
