"""``extract --engine ray``: extraction spread over a Ray cluster.

Model actors (one per GPU, each holding the model once) compute features; audio decoding runs as
Ray tasks on CPU workers anywhere in the cluster; the driver gathers every actor's results into
its own shard store (``WORKDIR/shards/ray-K-of-N``, written through the same crash-safe journal
as a local run) and merges the shards into the workdir's store at the end. A killed driver loses
no flushed row: rerunning merges what the shards hold and computes only what is missing.

Ray is an optional extra (``pip install '.[ray]'``).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from data.corpus import Corpus
from extract.base import SAMPLE_RATE, ExtractOptions, Extractor, build_extractor
from extract.lock import WorkdirLock
from extract.merge import merge_shards, shard_dir
from extract.run import clip_error, decode_task, clip_hashes
from extract.store import FeatureStore, SetHeader

log = logging.getLogger(__name__)

_CLIPS_PER_TASK = 16  # per-clip extractors: clips decoded and computed per round trip


class _Model:
    """Body of a model actor: one extractor, loaded once."""

    def __init__(self, spec: str, options: ExtractOptions) -> None:
        self.ex: Extractor = build_extractor(spec, options)
        self.ex.resolve()
        self.ex.load()

    def compute(self, decoded: list[tuple[str, np.ndarray | None, str | None]]
                ) -> list[tuple[str, dict | None, str | None, list[str], int]]:
        out: list[tuple[str, dict | None, str | None, list[str], int]] = []
        good = [(c, x) for c, x, err in decoded if err is None]
        out += [(c, None, err, [], 0) for c, x, err in decoded if err is not None]
        if self.ex.mode == "batched" and good:
            results = self.ex.compute_batch([x for _, x in good])
        else:
            results = []
            for _, x in good:
                try:
                    results.append(self.ex.compute(x))
                except Exception as exc:
                    results.append(exc)
        for (c, x), res in zip(good, results):
            if isinstance(res, Exception):
                out.append((c, None, clip_error(c, res), [], 0))
            else:
                out.append((c, {k: np.asarray(v) for k, v in res.items()}, None,
                            self.ex.warnings_for(len(x)), len(x)))
        return out

    def device(self) -> str:
        return str(self.ex.provenance().get("device", "cpu"))


def _ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("--engine ray needs Ray: pip install 'ray[default]' (or pip install "
                           "-e '.[ray]')") from None
    return ray


def extract_with_ray(workdir: Path, corpus: Corpus, prepared: list[tuple[Extractor, SetHeader]],
                     options: ExtractOptions, *, address: str | None = None,
                     actors: int | None = None, flush_rows: int = 256,
                     on_locked: Callable[[], None] | None = None) -> dict[str, str]:
    """Extract every prepared feature set over Ray; returns failed clips ('spec id' -> reason).

    ``on_locked`` runs once the workdir's lock is held, before anything is written (the CLI
    records the corpus there, so a refused run writes nothing).
    """
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    n_actors = actors or (gpus if gpus else 2)
    actor_opts = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 0.5}
    decode = ray.remote(num_cpus=0.5)(decode_task)
    Model = ray.remote(_Model)
    failed: dict[str, str] = {}
    store = FeatureStore(workdir)
    with WorkdirLock(workdir, purpose="extract (ray driver)"):
        store.check_schema()
        if on_locked is not None:
            on_locked()
        for ex, header in prepared:
            paths = {cid: str(p) for cid, p in corpus.clips["path"].items()}
            spans = corpus.spans()
            hashes, hash_errors = clip_hashes(paths, workdir, spans=spans)
            for cid, reason in corpus.clip_errors().items():  # refused by the reader
                hashes.pop(cid, None)
                hash_errors[cid] = reason
            done, _ = store.status(header.key)
            for cid in [c for c in hash_errors if c in done]:  # a failure never replaces a row
                log.warning("audio unreadable, stored row kept: %s", hash_errors.pop(cid))
            todo = [c for c in sorted(paths) if c in hashes and done.get(c) != hashes[c]]
            log.info("%s: %d clips to compute on %d Ray actor(s) (%d GPU in the cluster)",
                     header.key, len(todo), n_actors, gpus)
            shard_stores = [FeatureStore(shard_dir(workdir, k, n_actors, prefix="ray-"))
                            for k in range(n_actors)]
            for s in shard_stores:
                s.workdir.mkdir(parents=True, exist_ok=True)
            writers = [s.writer(header, flush_rows=flush_rows) for s in shard_stores]
            for cid, reason in sorted(hash_errors.items()):
                writers[0].fail(cid, "", reason)
                failed[f"{header.spec} {cid}"] = reason
            models = [Model.options(**actor_opts).remote(header.spec, options) for _ in range(n_actors)]
            if ex.mode == "batched":
                from data.audio import clip_seconds

                n_samples = []
                for c in todo:
                    try:
                        n_samples.append(max(1, int(clip_seconds(paths[c], *spans.get(c, ()))
                                                    * SAMPLE_RATE)))
                    except Exception:
                        n_samples.append(1)
                batches = [[todo[i] for i in b] for b in ex.plan_batches(n_samples)]
            else:
                batches = [todo[i:i + _CLIPS_PER_TASK] for i in range(0, len(todo), _CLIPS_PER_TASK)]
            t0 = time.perf_counter()
            pending: dict[Any, int] = {}
            queue = deque(enumerate(batches))
            computed = 0
            try:
                while queue or pending:
                    while queue and len(pending) < 2 * n_actors:
                        i, batch = queue.popleft()
                        k = i % n_actors
                        ref = models[k].compute.remote(decode.remote(
                            [(c, paths[c], *spans.get(c, ())) for c in batch]))
                        pending[ref] = k
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        k = pending.pop(ref)
                        for cid, values, err, warns, n in ray.get(ref):
                            if err is not None:
                                writers[k].fail(cid, hashes[cid], err)
                                failed[f"{header.spec} {cid}"] = err
                            else:
                                writers[k].add(cid, hashes[cid], values)
                                computed += 1
                                for w in warns:
                                    writers[k].note(cid, w)
            finally:
                for w in writers:
                    w.flush()
                for m in models:
                    ray.kill(m)
            seconds = time.perf_counter() - t0
            log.info("%s: %d clips computed over Ray in %.1f s", header.key, computed, seconds)
        result = merge_shards(store)
        if corpus.meta:  # what the corpus is (e.g. an audformat database's name and version)
            for _, header in prepared:
                store.update_provenance(header.key, corpus=corpus.meta)
    for key, (n_shards, rows) in result.items():
        log.info("%s: merged %d Ray shard(s); %d rows stored", key, n_shards, rows)
    return failed
