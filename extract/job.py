"""One extraction of a corpus into a workdir: what ``extract`` does, as a library function.

:func:`extract_workdir` reads the corpus, settles its split (the workdir's, the corpus's own or
a new automatic one), resolves every extractor before the store is touched, takes the workdir's
lock, records the corpus (``corpus.json``, ``split.csv``) and runs
:func:`extract.run.extract_corpus` for each feature spec (or the Ray engine for all of them).
The command line (``cli/cmd_extract.py``) and the Python API (``vocal_probe``) both call it; it
prints nothing and reports what happens through an :class:`ExtractListener`.

The job's fields are the ``extract`` flags (``split_seed`` is ``--split-seed``), and the error
messages name them that way.

Example:
    >>> import tempfile
    >>> from data.demo import make_demo_corpus
    >>> base = tempfile.mkdtemp()
    >>> root = make_demo_corpus(f"{base}/corpus", n_clips=8)
    >>> job = ExtractJob(corpus=root, layout="avb", workdir=f"{base}/wd", split="corpus")
    >>> extract_workdir(job).summaries  # no features: only the corpus reference is written
    []
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.corpus import Corpus
from extract.base import ExtractOptions
from extract.run import ExtractSummary

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
SPLIT_CHOICES = ("auto", "corpus")
"""``split``: None keeps what the workdir has; ``auto`` makes a split; ``corpus`` drops it."""


class ExtractJobError(ValueError):
    """The extraction cannot run as asked (bad corpus, busy workdir, damaged store, full disk);
    the message names the value and what to do. Nothing was written unless it says so."""


@dataclass(frozen=True)
class ExtractJob:
    """Everything one extraction needs: the ``extract`` command's flags as data.

    Attributes:
        corpus: the corpus root folder (``--corpus``).
        layout: its layout (``--layout``: avb, exvo, csv, iemocap, audformat, hf).
        workdir: the workdir (``--workdir``).
        features: feature specs; empty: only the corpus reference and split are written.
        labels, table, column, text_column, group_column: the reader's options.
        split: None (keep the workdir's), ``auto`` or ``corpus`` (``--split``).
        split_seed, split_fractions, split_stratify: settings of ``split="auto"``;
            ``split_fractions`` as ``"0.7,0.15,0.15"`` or three numbers.
        options: the extractors' options (layers, poolings, device, workers, ...).
        shard: ``(K, N)``: only shard K of N, into ``WORKDIR/shards/K-of-N``.
        engine: ``local`` or ``ray``; ray_address, ray_actors: the Ray settings.
        flush_rows: rows per crash-safe journal part.
    """

    corpus: str | Path
    layout: str
    workdir: str | Path
    features: tuple[str, ...] = ()
    labels: str | Path | None = None
    table: str | None = None
    column: str | None = None
    text_column: str | None = None
    group_column: str | None = None
    split: str | None = None
    split_seed: int | None = None
    split_fractions: str | Sequence[float] | None = None
    split_stratify: str | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    shard: tuple[int, int] | None = None
    engine: str = "local"
    ray_address: str | None = None
    ray_actors: int | None = None
    flush_rows: int = 256

    def reader_options(self) -> dict[str, Any]:
        """The keyword options of :func:`data.corpora.read_corpus` (and of ``corpus.json``)."""
        return {"table": self.table, "column": self.column, "text_column": self.text_column,
                "group_column": self.group_column}


class ExtractListener:
    """What :func:`extract_workdir` reports while it runs; every method does nothing here.

    Subclass it: the command line prints notes and draws progress bars, the Python API calls
    the user's progress callback.
    """

    def note(self, text: str) -> None:
        """Something the user should know (the corpus's own split replaced, no split at all)."""

    def shard(self, k: int, n: int, n_clips: int, n_total: int, store_dir: Path) -> None:
        """Only shard ``k`` of ``n`` runs: ``n_clips`` of the corpus's ``n_total`` clips."""

    def split_written(self, split: Any, path: Path) -> None:
        """An automatic split (:class:`data.splits.AutoSplit`) was written to ``path``."""

    def set_started(self, spec: str, n_clips: int, audio_seconds: float) -> None:
        """A feature set starts: ``n_clips`` clips to compute (the rest is stored already)."""

    def clips_done(self, spec: str, n_clips: int, audio_seconds: float) -> None:
        """``n_clips`` more clips of ``spec`` are finished (an increment, not a total)."""

    def set_finished(self, spec: str, summary: ExtractSummary | None) -> None:
        """A feature set ended: its summary, or None when it stopped by an exception."""


@dataclass
class ExtractJobResult:
    """What :func:`extract_workdir` did.

    Attributes:
        workdir: the workdir.
        corpus: the corpus as read (automatic split not applied).
        summaries: one :class:`extract.run.ExtractSummary` per feature set (local engine).
        failed: ``"<spec> <clip id>"`` -> reason, for every clip that failed.
        kept: ``"<spec> <clip id>"`` -> reason, for clips whose audio is unreadable now and
            whose stored row was kept.
        split_file: ``WORKDIR/split.csv`` when an automatic split was written.
        notes: what was told to :meth:`ExtractListener.note`.
    """

    workdir: Path
    corpus: Corpus
    summaries: list[ExtractSummary] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    split_file: Path | None = None
    notes: list[str] = field(default_factory=list)


def _fractions(value: str | Sequence[float] | None) -> tuple[float, ...]:
    from data.splits import DEFAULT_FRACTIONS

    if value is None:
        return tuple(DEFAULT_FRACTIONS)
    try:
        items = str(value).split(",") if isinstance(value, str) else list(value)
        return tuple(float(x) for x in items)
    except (TypeError, ValueError):
        raise ExtractJobError(f"--split-fractions takes three numbers TRAIN,VAL,TEST (e.g. "
                              f"0.7,0.15,0.15), got {value!r}") from None


def _split_record(job: ExtractJob, corpus: Corpus, note: Callable[[str], None]):
    """(the split to record in corpus.json or None, the automatic split to write or None)."""
    from data.splits import SPLIT_FILE, SplitError, auto_split
    from data.workdir import load_corpus_ref

    tuning = [f for f in ("split_seed", "split_fractions", "split_stratify")
              if getattr(job, f) is not None]
    if job.split not in (None, *SPLIT_CHOICES):
        raise ExtractJobError(f"split must be one of {SPLIT_CHOICES} or None, got {job.split!r}")
    if tuning and job.split != "auto":
        raise ExtractJobError(f"--{tuning[0].replace('_', '-')} goes with --split auto")
    if job.split is None:
        try:
            prior = (load_corpus_ref(job.workdir) or {}).get("split")
        except ValueError:
            prior = None
        if not prior or prior.get("method") != "auto":
            return None, None
        # kept as written: clips added since take part in no run until --split auto is rerun
        log.info("keeping the workdir's automatic split (%s, seed %s); --split auto makes it "
                 "again, --split corpus drops it", SPLIT_FILE, prior.get("seed", 0))
        return prior, None
    if job.split == "corpus":
        return None, None
    fractions = _fractions(job.split_fractions)
    own = {k: v for k, v in corpus.summary().items() if k in ("Train", "Val", "Test") and v}
    if own:
        note(f"the corpus's own split ({', '.join(f'{k} {v}' for k, v in own.items())}) "
                      "is replaced by the automatic one (--split corpus goes back to it)")
    try:
        split = auto_split(corpus, seed=job.split_seed or 0, fractions=fractions,
                           stratify=job.split_stratify)
    except SplitError as exc:
        raise ExtractJobError(str(exc)) from exc
    record = {"method": "auto", "seed": split.seed, "fractions": list(split.fractions),
              "stratify": split.stratify}
    return record, split


def _read_corpus(job: ExtractJob) -> Corpus:
    from data.corpora import read_corpus
    from data.corpus import CorpusError

    root = Path(job.corpus)
    if not root.is_dir():
        raise ExtractJobError(f"--corpus {root} is not a folder")
    if not job.features and job.split is None:
        raise ExtractJobError("extract needs --features SPEC [SPEC ...] (or --split auto|corpus "
                              "to write only the workdir's split)")
    if job.engine not in ENGINES:
        raise ExtractJobError(f"engine must be one of {ENGINES}, got {job.engine!r}")
    try:
        corpus = read_corpus(root, job.layout, labels=job.labels, workdir=job.workdir,
                             **job.reader_options())
    except (CorpusError, FileNotFoundError) as exc:
        raise ExtractJobError(str(exc)) from exc
    for problem in corpus.problems:
        log.warning("corpus: %s", problem)
    return corpus


def extract_workdir(job: ExtractJob, *, listener: ExtractListener | None = None
                    ) -> ExtractJobResult:
    """Run one extraction (module docstring): the corpus, its split, every feature set.

    Args:
        job: what to extract where.
        listener: told about notes, the split written and each set's progress.

    Returns:
        An :class:`ExtractJobResult`; failed clips are in ``failed`` (nothing raises for a bad
        clip: the rest is stored).

    Raises:
        ExtractJobError: not a corpus folder, no features and no split, an unreadable corpus, a
            split that cannot be made, a spec that cannot run here, a busy workdir, a damaged
            store, a full disk (every row reported done is stored).
        KeyboardInterrupt: a stop was requested (``extract.run.request_stop``); what was
            finished is stored.
    """
    from data.hints import split_command
    from data.splits import SPLIT_FILE, write_split
    from data.workdir import save_corpus_ref
    from extract.base import ExtractorUnavailable
    from extract.lock import WorkdirBusy, WorkdirLock
    from extract.merge import shard_dir
    from extract.run import extract_corpus, prepare_extractor, shard_of, stop_requested
    from extract.store import FeatureStore, StoreError

    listener = listener or ExtractListener()
    corpus = _read_corpus(job)
    root, workdir = Path(job.corpus), Path(job.workdir)
    result = ExtractJobResult(workdir=workdir, corpus=corpus)

    def note(text: str) -> None:
        result.notes.append(text)
        listener.note(text)

    split_record, split = _split_record(job, corpus, note)
    if split_record is None and not any(corpus.summary()[s] for s in ("Train", "Val", "Test")):
        ref = {"root": str(root.resolve()), "layout": job.layout,
               "labels": str(Path(job.labels).resolve()) if job.labels else None,
               **job.reader_options()}
        note("no clip has a split (Train/Val/Test); before `train`, add a `split` "
                      "column (train/val/test) to the label table or make a speaker-disjoint "
                      "split with:\n  " + split_command(workdir, ref))
    ids = None
    store_dir = workdir
    if job.shard is not None:
        k, n = job.shard
        ids = [c for c in corpus.clips.index if shard_of(c, n) == k]
        store_dir = shard_dir(workdir, k, n)
        listener.shard(k, n, len(ids), len(corpus), store_dir)
    # Resolve every extractor before touching the store: a missing model fails here.
    prepared = []
    for spec in job.features:
        try:
            prepared.append(prepare_extractor(spec, job.options))
        except (ValueError, ExtractorUnavailable) as exc:
            raise ExtractJobError(f"{spec}: {exc}") from exc

    def remember_corpus() -> None:  # only once the lock is held: a refused run writes nothing
        if split is not None:  # the file first: corpus.json never names a split that is not there
            result.split_file = write_split(workdir, split)
            listener.split_written(split, result.split_file)
        elif job.split == "corpus" and (workdir / SPLIT_FILE).is_file():
            (workdir / SPLIT_FILE).unlink()
        save_corpus_ref(workdir, root, job.layout, job.labels, split=split_record,
                        meta=corpus.meta, **job.reader_options())

    if not job.features:  # only the split (and the corpus reference)
        try:
            with WorkdirLock(workdir):
                remember_corpus()
        except WorkdirBusy as exc:
            raise ExtractJobError(str(exc)) from exc
        return result

    if job.engine == "ray":
        from extract.ray_engine import extract_with_ray

        if job.shard is not None:
            raise ExtractJobError("--engine ray shards the work itself; do not combine it with "
                                  "--shard")
        try:
            result.failed = extract_with_ray(
                workdir, corpus, prepared, job.options, address=job.ray_address,
                actors=job.ray_actors, flush_rows=job.flush_rows, on_locked=remember_corpus)
        except (WorkdirBusy, StoreError) as exc:
            raise ExtractJobError(str(exc)) from exc
        return result
    store = FeatureStore(store_dir)
    try:
        with WorkdirLock(store_dir):
            store.check_schema()
            remember_corpus()
            for ex_header in prepared:
                if stop_requested():  # a stop that arrived inside native code was swallowed
                    raise KeyboardInterrupt("stop requested")
                spec = ex_header[1].spec
                summary = None
                try:
                    summary = extract_corpus(
                        store, corpus, spec, options=job.options, ids=ids, prepared=ex_header,
                        flush_rows=job.flush_rows,
                        on_start=lambda n, s, _spec=spec: listener.set_started(_spec, n, s),
                        progress=lambda n, s, _spec=spec: listener.clips_done(_spec, n, s))
                finally:
                    listener.set_finished(spec, summary)
                result.summaries.append(summary)
                for cid, reason in sorted(summary.failed.items()):
                    result.failed[f"{spec} {cid}"] = reason
                for cid, reason in sorted(summary.kept.items()):
                    result.kept[f"{spec} {cid}"] = reason
    except (WorkdirBusy, StoreError) as exc:
        raise ExtractJobError(str(exc)) from exc
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            raise ExtractJobError(
                f"disk full while writing {store_dir}: {exc}. Every row reported done is safe in "
                f"the store; free space and rerun the same command to finish.") from exc
        raise
    return result
