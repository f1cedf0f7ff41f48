"""A workdir from Python: its feature sets as pandas / numpy, extraction and training runs.

:class:`Workdir` reads what the command line wrote (and writes the same things): ``sets()``
lists the feature sets, ``matrix()`` gives one set's vectors as a DataFrame indexed by clip id
(``arrays()``: numpy plus the ids), ``frames()`` the frame sequences, ``labels()`` the corpus's
split, group and label columns. ``extract()`` runs :func:`extract.job.extract_workdir` (what
``extract`` runs) and ``train()`` :func:`heads.experiment.run_experiment` (what ``train``
runs) on the :class:`heads.config.ExperimentConfig` the flags would build. Nothing here prints:
progress goes to a ``progress(what, done, total)`` callback, notes to :mod:`logging`.

Vectors are returned as float32 (stored float16 values convert exactly); frames in their stored
dtype. Rows are sorted by clip id unless ``ids`` gives the order.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.corpus import Corpus, examples
from data.hints import extract_command
from data.workdir import open_corpus
from extract.base import ExtractOptions
from extract.export import column_names
from extract.job import ExtractJob, ExtractJobResult, ExtractListener, extract_workdir
from extract.store import FeatureStore, SetHeader
from heads.experiment import ExperimentResult, build_config, run_experiment
from heads.features import find_set, request_checks, resolve_field
from heads.sequences import choose_frames_field
from heads.training import loop as training_loop

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
"""``progress(what, done, total)``: ``what`` is a feature spec (extraction: clips) or a net
(training: ``"mlp-avb seed0"``, epochs)."""

EXTRACT_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(ExtractOptions))


def _int_tuple(value: Any, what: str) -> tuple[int, ...] | None:
    """``None``/``"all"`` -> None; ``12`` / ``"6,12"`` / ``[6, 12]`` -> a tuple of ints."""
    if value is None or value == "all":
        return None
    try:
        if isinstance(value, str):
            return tuple(int(t) for t in value.split(",") if t.strip())
        if isinstance(value, (int, np.integer)):
            return (int(value),)
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be 'all', an integer or integers (e.g. [6, 12]), "
                         f"got {value!r}") from None


def extract_options(**options: Any) -> ExtractOptions:
    """The :class:`extract.base.ExtractOptions` of the ``extract`` flags given as keywords
    (``layers=[6, 12]``, ``poolings="mean,std"``, ``frames_layers=12``, ``device="cpu"``, ...),
    with the command line's defaults (``workers``: every core).

    Raises:
        TypeError: an unknown keyword (lists the valid ones).
        ValueError: a value the flag would refuse.
    """
    unknown = sorted(set(options) - set(EXTRACT_OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown extraction option(s) {unknown}; valid: "
                        f"{', '.join(EXTRACT_OPTION_NAMES)}")
    out = dict(options)
    if "layers" in out:
        out["layers"] = _int_tuple(out["layers"], "layers")
    if "frames_layers" in out:
        out["frames_layers"] = _int_tuple(out["frames_layers"] or (), "frames_layers") or ()
    if isinstance(out.get("poolings"), str):
        out["poolings"] = tuple(p.strip() for p in out["poolings"].split(",") if p.strip())
    elif "poolings" in out:
        out["poolings"] = tuple(out["poolings"])
    out.setdefault("workers", max(1, os.cpu_count() or 2))
    if int(out["workers"]) < 1:
        raise ValueError(f"workers must be at least 1, got {out['workers']}")
    if float(out.get("batch_seconds", 1.0)) <= 0:
        raise ValueError(f"batch_seconds must be positive, got {out['batch_seconds']}")
    return ExtractOptions(**out)


class _CallbackListener(ExtractListener):
    """Extraction reports -> the user's ``progress`` callback (clips) and log lines."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress = progress
        self.done: dict[str, int] = {}
        self.total: dict[str, int] = {}

    def note(self, text: str) -> None:
        log.warning("%s", text)

    def shard(self, k: int, n: int, n_clips: int, n_total: int, store_dir: Path) -> None:
        log.info("shard %d/%d: %d of %d clips -> %s", k, n, n_clips, n_total, store_dir)

    def split_written(self, split: Any, path: Path) -> None:
        log.info("automatic split written to %s (%s)", path, split.describe())

    def set_started(self, spec: str, n_clips: int, audio_seconds: float) -> None:
        self.done[spec], self.total[spec] = 0, int(n_clips)
        if self.progress is not None:
            self.progress(spec, 0, int(n_clips))

    def clips_done(self, spec: str, n_clips: int, audio_seconds: float) -> None:
        self.done[spec] = self.done.get(spec, 0) + int(n_clips)
        if self.progress is not None:
            self.progress(spec, self.done[spec], self.total.get(spec, self.done[spec]))


@contextlib.contextmanager
def _training_progress(progress: ProgressCallback | None) -> Iterator[None]:
    """Hand the training loop's per-epoch progress records to ``progress``.

    A filter on the loop's logger sees every record first; the ones below the level the
    logger had are dropped there, so the user's logging shows exactly what it showed before.
    """
    if progress is None:
        yield
        return
    logger = training_loop.log
    level, threshold = logger.level, logger.getEffectiveLevel()

    def forward(record: logging.LogRecord) -> bool:
        step = getattr(record, "progress", None)
        if isinstance(step, dict):
            progress(str(step.get("key", record.name)), int(step.get("done", 0)),
                     int(step.get("total") or 0))
        return record.levelno >= threshold

    logger.addFilter(forward)
    logger.setLevel(min(threshold, logging.INFO))
    try:
        yield
    finally:
        logger.removeFilter(forward)
        logger.setLevel(level)


@contextlib.contextmanager
def _quiet_model_loading(specs: Sequence[str]) -> Iterator[None]:
    """transformers' and huggingface_hub's own progress bars ("Loading weights") off while SSL
    models load, restored after. (The command line sets their environment variables before
    they are imported; in a notebook they may be imported already.)"""
    undo: list[Callable[[], None]] = []
    if any(s.startswith("ssl:") for s in specs):
        with contextlib.suppress(ImportError):
            from transformers.utils import logging as transformers_logging

            if transformers_logging.is_progress_bar_enabled():
                transformers_logging.disable_progress_bar()
                undo.append(transformers_logging.enable_progress_bar)
        with contextlib.suppress(ImportError):
            from huggingface_hub import utils as hub_utils

            if not hub_utils.are_progress_bars_disabled():
                hub_utils.disable_progress_bars()
                undo.append(hub_utils.enable_progress_bars)
    try:
        yield
    finally:
        for restore in undo:
            restore()


class Workdir:
    """One workdir: its store, corpus, runs. Construct cheaply; each call reads what is there.

    Args:
        path: the workdir folder (created by the first :meth:`extract`).

    Example:
        >>> wd = Workdir("/nowhere")
        >>> wd.sets()
        Traceback (most recent call last):
        ...
        FileNotFoundError: workdir /nowhere does not exist; extract into it first (Workdir('/nowhere').extract(corpus=..., layout=..., features=[...]))
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Workdir({str(self.path)!r})"

    def _store(self) -> FeatureStore:
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"workdir {self.path} does not exist; extract into it first "
                f"(Workdir({str(self.path)!r}).extract(corpus=..., layout=..., features=[...]))")
        store = FeatureStore(self.path)
        store.check_schema()
        return store

    # ------------------------------------------------------------------ reading
    def sets(self) -> pd.DataFrame:
        """One row per feature set, indexed by key: spec, name, rows, failed, the fixed fields
        (``vectors``), the frame-sequence fields (``frames``) and the SSL layers stored."""
        store = self._store()
        rows, keys = [], store.keys()
        for key in keys:
            info = store.info(key)
            fields = info.header.fields
            layers = next((f.attrs["layers"] for f in fields.values()
                           if (f.attrs or {}).get("layers") is not None), None)
            rows.append({"key": key, "spec": info.header.spec, "name": info.header.name,
                         "rows": info.n_rows, "failed": info.n_failed,
                         "vectors": sorted(n for n, f in fields.items() if not f.ragged),
                         "frames": sorted(n for n, f in fields.items() if f.ragged),
                         "layers": layers})
        columns = ["key", "spec", "name", "rows", "failed", "vectors", "frames", "layers"]
        return pd.DataFrame(rows, columns=columns).set_index("key")

    def corpus(self) -> Corpus:
        """The corpus the workdir was built from, its automatic split applied.

        Raises:
            FileNotFoundError: no extraction recorded a corpus here.
        """
        return open_corpus(self.path)

    def labels(self) -> pd.DataFrame:
        """Per clip (index: clip id): ``split``, ``group`` and every label column (NaN where a
        clip has no label)."""
        corpus = self.corpus()
        return corpus.clips[["split", "group"]].join(corpus.labels, how="left")

    def _rows(self, store: FeatureStore, header: SetHeader, split: str | None,
              ids: Sequence[str] | None) -> list[str]:
        done, _ = store.status(header.key)
        if ids is not None:
            ids = [str(i) for i in ids]
            missing = [i for i in ids if i not in done]
            if missing:
                raise KeyError(f"{len(missing)} clip(s) have no stored row in {header.key}: "
                               f"{examples(missing)}; extract them with "
                               f"`{extract_command(self.path, header.spec)}`")
            return ids
        if split is not None:
            return sorted(set(self.corpus().split_ids(split)) & set(done))
        return sorted(done)

    def arrays(self, features: str, *, field: str | None = None, layer: int | None = None,
               pooling: str = "mean", split: str | None = None,
               ids: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """One set's vectors as ``(X, ids)``: X float32 ``(n_clips, dim)``.

        Args:
            features: the set: spec, name or key (as ``train --features``).
            field, layer, pooling: which array (``train``'s defaults: functionals, or the last
                stored layer's ``pooled_<pooling>``).
            split: only the stored clips of ``Train``, ``Val`` or ``Test``.
            ids: these clips, in this order (each must be stored).

        Raises:
            heads.features.FeatureError: no such set, field, layer or pooling (says how to
                extract it).
            KeyError: an id has no stored row.
        """
        store = self._store()
        header = find_set(store, features, request_checks(field, layer, pooling))
        name, index, _ = resolve_field(header, field, layer, pooling)
        rows = self._rows(store, header, split, ids)
        X, _ = store.read(header.key, name, rows, index=index)
        return X.reshape(len(rows), -1).astype(np.float32), rows

    def matrix(self, features: str, *, field: str | None = None, layer: int | None = None,
               pooling: str = "mean", split: str | None = None,
               ids: Sequence[str] | None = None) -> pd.DataFrame:
        """:meth:`arrays` as a DataFrame indexed by clip id, its columns named as ``export``
        names them (``l12_mean_0``; openSMILE's feature names)."""
        store = self._store()
        header = find_set(store, features, request_checks(field, layer, pooling))
        name, index, _ = resolve_field(header, field, layer, pooling)
        X, rows = self.arrays(header.key, field=name, layer=layer, pooling=pooling,
                              split=split, ids=ids)
        return pd.DataFrame(X, index=pd.Index(rows, name="clip_id"),
                            columns=column_names(name, header.fields[name], index))

    def frames(self, features: str, *, field: str | None = None, layer: int | None = None,
               split: str | None = None, ids: Sequence[str] | None = None
               ) -> dict[str, np.ndarray]:
        """One set's frame sequences: clip id -> ``(frames, dim)`` array (stored dtype).

        Args:
            features: the set: spec, name or key.
            field: the ragged field (``frames_l12``, ``logmel``, ``lld``); None: as
                ``train --frames-field`` picks it (``frames_l<layer>``, else the only one).
            layer: the SSL layer whose frames to read when ``field`` is None.
            split, ids: as in :meth:`arrays`.

        Raises:
            heads.features.FeatureError: the set stores no frames (says how to store them).
        """
        store = self._store()
        header = find_set(store, features, lambda h: choose_frames_field([h], field, layer))
        _, name = choose_frames_field([header], field, layer)
        spec = header.fields[name]
        dim = int(np.prod(spec.shape)) if spec.shape else 1
        rows = self._rows(store, header, split, ids)
        seqs = store.read_sequences(header.key, name, rows)
        return {cid: np.zeros((0, dim), spec.dtype) if s is None else s.reshape(len(s), dim)
                for cid, s in zip(rows, seqs)}

    # ------------------------------------------------------------------ running
    def extract(self, *, corpus: str | os.PathLike, layout: str,
                features: Sequence[str] | str = (),
                labels: str | os.PathLike | None = None, table: str | None = None,
                column: str | None = None, text_column: str | None = None,
                group_column: str | None = None, split: str | None = None,
                split_seed: int | None = None, split_fractions: Any = None,
                split_stratify: str | None = None, shard: tuple[int, int] | None = None,
                engine: str = "local", ray_address: str | None = None,
                ray_actors: int | None = None, flush_rows: int = 256,
                progress: ProgressCallback | None = None,
                **options: Any) -> ExtractJobResult:
        """Extract feature sets of a corpus into this workdir, as ``extract`` does with the
        same flags (keywords: the flags without ``--``, dashes as underscores): the same keys,
        rows and ``corpus.json``; a rerun computes only what is missing.

        Args:
            corpus, layout, features, labels, table, column, text_column, group_column,
            split, split_seed, split_fractions, split_stratify, shard, engine, ray_address,
            ray_actors, flush_rows: as the ``extract`` flags.
            progress: ``progress(spec, clips done, clips to do)`` as clips finish.
            **options: the extractors' options (:func:`extract_options`): layers,
                poolings, frames_layers, dtype, device, batch_seconds, level, workers,
                whisper_input.

        Returns:
            An :class:`extract.job.ExtractJobResult`: per-set summaries, failed clips.

        Raises:
            extract.job.ExtractJobError: what ``extract`` refuses with exit 2.
            TypeError, ValueError: an unknown or invalid option.
        """
        job = ExtractJob(
            corpus=corpus, layout=layout, workdir=self.path,
            features=(features,) if isinstance(features, str) else tuple(features),
            labels=labels, table=table, column=column, text_column=text_column,
            group_column=group_column, split=split, split_seed=split_seed,
            split_fractions=split_fractions, split_stratify=split_stratify,
            options=extract_options(**options), shard=shard, engine=engine,
            ray_address=ray_address, ray_actors=ray_actors, flush_rows=flush_rows)
        with _quiet_model_loading(job.features):
            return extract_workdir(job, listener=_CallbackListener(progress))

    def train(self, *, task: str, features: Sequence[str] | str, head: str,
              layer: int | None = None, pooling: str = "mean", seeds: int = 1,
              n_boot: int = 500, run_name: str | None = None, n_jobs: int = 1,
              progress: ProgressCallback | None = None, **options: Any) -> ExperimentResult:
        """One training run, as ``train`` runs it: the same :class:`heads.config.ExperimentConfig`
        (``config.json``), run folder, metrics and saved model.

        Args:
            task, features, head, layer, pooling, seeds, n_boot, run_name: as the ``train``
                flags; ``n_jobs`` is ``--jobs``.
            progress: ``progress(net, epoch, epochs)`` after each epoch (torch heads; a
                classical head is one fit and reports none).
            **options: torch heads' training options, the fields of
                :class:`heads.config.TrainOptions` (``epochs=3``, ``lr=1e-3``,
                ``frames_field="frames_l12"``, ``net={"hidden": 256}``).

        Returns:
            A :class:`heads.experiment.ExperimentResult`: ``run_dir`` and ``metrics`` (what
            ``metrics.json`` holds).

        Raises:
            heads.experiment.ConfigError: seeds < 1, options for a classical head, an
                invalid option (a ValueError; the message is the one ``train`` prints).
            ValueError: an unknown head.
            heads.features.FeatureError: the store lacks what the run reads (names the
                ``extract`` command).
            data.tasks.TaskError, data.corpus.CorpusError: the corpus lacks the task's labels
                or a split.
        """
        cfg = build_config(self.path, task=task, features=features, head=head, layer=layer,
                           pooling=pooling, seeds=seeds, n_boot=n_boot, run_name=run_name,
                           n_jobs=n_jobs, options=options)
        with _training_progress(progress):
            return run_experiment(cfg)
