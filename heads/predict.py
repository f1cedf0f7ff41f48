"""Score clips with a run's saved model: exactly the run's features, then its model.

:func:`predict_clips` takes a run folder and a :class:`data.corpus.Corpus` of the clips to score
(a corpus read by any layout, or :func:`audio_corpus` of loose files) and returns one table
row per clip with the predicted class names / values of every task, and the class
probabilities where the model gives them. Vector heads read the run's feature columns; sequence
heads (lstm, CNNs on log-mel) the frames of the run's ragged field.

Where the features come from, clip by clip:

1. the run's own workdir store, when it holds a row with the same content hash (the audio
   the run was trained or scored on): that row is read as it is, so a Val clip gets exactly
   the features its run saw;
2. otherwise the prediction store ``WORKDIR/predict/`` (``--store`` elsewhere): the run's
   extractor is rebuilt from the configuration and options in its ``model.json``, must give
   the same feature-set key as the run's, and computes the clip with the same crash-safe,
   resumable machinery as ``extract`` (a second ``predict`` on the same audio reuses the rows).

New audio never goes into the workdir's own store: that store is the corpus's (``train``,
``export``, ``verify --repair`` and ``report`` read every row of it as a clip of the corpus
in ``corpus.json``), so foreign clips would be exported and verified as corpus clips and could
take a corpus clip's id; and the workdir's extraction lock stays free for ``extract``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.corpus import INDEX_NAME, Corpus
from extract.base import ExtractOptions, ExtractorUnavailable
from extract.lock import WorkdirLock
from extract.run import clip_hashes, extract_corpus, prepare_extractor
from extract.store import FeatureStore, SetHeader
from heads.features import FeatureError, resolve_field
from heads.saved_model import SavedModel, load_saved_model

log = logging.getLogger(__name__)

PREDICT_STORE = "predict"
"""``WORKDIR/predict/``: the store of clips scored by ``predict`` that the workdir lacks."""


class PredictError(ValueError):
    """Prediction cannot be done as asked; the message names the run or set and what to do."""


@dataclass
class PredictResult:
    """What :func:`predict_clips` did.

    Attributes:
        table: one row per scored clip: ``id``, ``file``, ``start``, ``end``, then the
            predictions (see :func:`prediction_columns`).
        failed: clip id -> why it has no prediction (unreadable audio, non-finite features).
        reused: clips whose features were read from the run's workdir store.
        stored: clips found in the prediction store already (an earlier ``predict``).
        computed: clips extracted into the prediction store by this call (per feature set,
            summed).
        store_dir: the prediction store.
    """

    table: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    reused: int = 0
    stored: int = 0
    computed: int = 0
    store_dir: Path | None = None


def audio_corpus(files: Sequence[str | os.PathLike]) -> Corpus:
    """Loose audio files as a corpus of their own: clip id = the file's absolute path.

    Raises:
        PredictError: a file does not exist.
    """
    paths = []
    for f in files:
        p = Path(f).expanduser().absolute()
        if not p.is_file():
            raise PredictError(f"--audio {f}: no such file")
        paths.append(str(p))
    index = pd.Index(list(dict.fromkeys(paths)), name=INDEX_NAME)
    clips = pd.DataFrame({"path": list(index), "split": "", "group": ""}, index=index)
    return Corpus(root=Path("/"), layout="audio", clips=clips,
                  labels=pd.DataFrame(index=pd.Index([], name=INDEX_NAME)))


def run_workdir(run_dir: Path) -> Path | None:
    """The workdir of ``WORKDIR/runs/<run>``, or None for a run folder kept elsewhere."""
    run_dir = Path(run_dir).absolute()
    if run_dir.parent.name == "runs" and FeatureStore(run_dir.parent.parent).exists():
        return run_dir.parent.parent
    return None


def default_store_dir(run_dir: Path) -> Path:
    """``WORKDIR/predict`` for a run inside its workdir, else ``RUN_DIR/predict``."""
    workdir = run_workdir(run_dir)
    return (workdir if workdir is not None else Path(run_dir).absolute()) / PREDICT_STORE


def extract_options(entry: dict[str, Any], *, device: str | None = None,
                    workers: int | None = None) -> ExtractOptions:
    """The ``ExtractOptions`` a feature set was extracted with (its manifest entry), with
    ``device`` and ``workers`` replaced when given (they are not part of the key)."""
    names = {f.name for f in dataclasses.fields(ExtractOptions)}
    saved = {k: v for k, v in (entry.get("extract_options") or {}).items() if k in names}
    for name in ("layers", "poolings", "frames_layers"):
        if isinstance(saved.get(name), list):
            saved[name] = tuple(saved[name])
    options = ExtractOptions(**saved)
    changes = {k: v for k, v in (("device", device), ("workers", workers)) if v is not None}
    return dataclasses.replace(options, **changes) if changes else options


def prepare_set(entry: dict[str, Any], options: ExtractOptions) -> tuple[Any, SetHeader]:
    """The run's extractor of one feature set, checked to give the run's key.

    Raises:
        PredictError: the extractor cannot be built here (a missing or moved model folder,
            a missing package) or now gives another key (other weights or settings).
    """
    key, spec = entry["key"], entry["spec"]
    try:
        prepared = prepare_extractor(spec, options)
    except (ValueError, ExtractorUnavailable, OSError) as exc:
        raise PredictError(
            f"the run's feature set {key} cannot be computed here: {spec} fails to load ({exc}). "
            f"predict must compute exactly the features the run was trained on: restore what "
            f"{spec} names (a fine-tuned model folder, the model in the hub cache), or train a "
            f"run on features that exist here") from None
    header = prepared[1]
    if header.key != key:
        raise PredictError(
            f"{spec} now gives the feature set {header.key}, but the run was trained on {key}: "
            f"the model's weights or the extractor's settings changed, so its features would not "
            f"be the run's. Restore the original model files, or extract the set it now gives "
            f"({header.key}) and train a new run on it")
    return prepared


def prediction_columns(model: SavedModel) -> dict[tuple[str, str], list[str]]:
    """``(task, target) -> output columns``: a target's label columns (a class column, or each
    regression column); a column name shared by two tasks gets its task in front
    (``task:column``). Probability columns (``p_<column>_<class>``) follow each class column.
    """
    counts: dict[str, int] = {}
    for t in model.tasks:
        for c in t.columns:
            counts[c] = counts.get(c, 0) + 1
    return {(t.name, tg.name): [c if counts[c] == 1 else f"{t.name}:{c}" for c in tg.columns]
            for t in model.tasks for tg in t.targets}


def predict_clips(run_dir: str | os.PathLike, corpus: Corpus, *, ids: Sequence[str] | None = None,
                  store_dir: str | os.PathLike | None = None, device: str = "auto",
                  workers: int = 1, progress: Callable[[int, float], None] | None = None,
                  on_start: Callable[[str, int, float], None] | None = None,
                  on_end: Callable[[], None] | None = None) -> PredictResult:
    """Predict every task of a run for the clips of ``corpus`` (or its ``ids``).

    Args:
        run_dir: the run folder (with ``model.json``).
        corpus: the clips to score (their audio paths, segments).
        ids: only these clip ids (e.g. one split); default every clip.
        store_dir: the prediction store (default :func:`default_store_dir`).
        device: where SSL models and torch heads run (``auto``, ``cpu``, ``cuda``).
        workers: processes for openSMILE / log-mel and audio decoding.
        progress: called with (clips, audio seconds) as clips are extracted.
        on_start: called with (feature spec, clips to extract, their audio seconds).
        on_end: called when one feature set's extraction is over.

    Returns:
        A :class:`PredictResult`.

    Raises:
        SavedModelError: the run has no usable saved model.
        PredictError: features that cannot be computed here (the run's extractor does not load
            or gives another key).
        WorkdirBusy: another ``predict`` holds the prediction store.
    """
    model = load_saved_model(run_dir)
    ids = list(corpus.clips.index if ids is None else ids)
    workdir = run_workdir(Path(run_dir))
    wstore = FeatureStore(workdir) if workdir is not None else None
    store_path = Path(store_dir) if store_dir is not None else default_store_dir(Path(run_dir))
    pstore = FeatureStore(store_path)
    paths = {c: str(corpus.clips.at[c, "path"]) for c in ids}
    spans = {c: sp for c, sp in corpus.spans().items() if c in paths}
    result = PredictResult(table=pd.DataFrame(), store_dir=store_path)

    options = [extract_options(f, device=device, workers=workers) for f in model.features]
    prepared = [prepare_set(f, o) for f, o in zip(model.features, options)]
    store_path.mkdir(parents=True, exist_ok=True)
    hashes, _ = clip_hashes(paths, store_path, spans=spans)
    blocks, present = [], np.ones(len(ids), dtype=bool)
    with WorkdirLock(store_path, purpose="predict"):
        pstore.check_schema()
        for entry, opts, (ex, header) in zip(model.features, options, prepared):
            reuse = _rows_in(wstore, header.key, ids, hashes)
            todo = [c for c in ids if c not in reuse]
            if todo:
                def started(n: int, audio_s: float, _spec: str = header.spec) -> None:
                    if on_start:
                        on_start(_spec, n, audio_s)

                try:
                    summary = extract_corpus(pstore, corpus, header.spec, options=opts, ids=todo,
                                             progress=progress, on_start=started,
                                             prepared=(ex, header))
                finally:
                    if on_end:
                        on_end()
                result.computed += summary.computed
                result.stored = max(result.stored, summary.reused)
                # a clip whose audio cannot be read now is not scored, even from an old row
                for cid, reason in {**summary.failed, **summary.kept}.items():
                    result.failed.setdefault(cid, reason)
            result.reused = max(result.reused, len(reuse))
            X, ok = _read_block(entry, header, wstore, pstore, ids, reuse)
            ok &= np.array([c not in result.failed for c in ids], dtype=bool)
            blocks.append(X)
            present &= ok
    if model.input_kind == "vector":
        X = np.concatenate(blocks, axis=1)
        finite = np.isfinite(X).all(axis=1)
    else:  # one set, its frame sequences (a clip without frames was left out by its run too)
        X = blocks[0]
        present &= np.array([len(a) > 0 for a in X], dtype=bool)
        finite = np.array([bool(np.isfinite(a).all()) for a in X], dtype=bool)
    for i in np.flatnonzero(present & ~finite):
        result.failed[ids[i]] = "the features hold NaN or infinite values (the run left such clips out too)"
    for i in np.flatnonzero(~present):
        result.failed.setdefault(ids[i], "no features could be computed")
    keep = np.flatnonzero(present & finite)
    kept_ids = [ids[i] for i in keep]
    kept = X[keep] if model.input_kind == "vector" else [X[i] for i in keep]
    preds = model.predict(kept, device=device) if len(keep) else None
    result.table = _table(model, corpus, kept_ids, preds)
    log.info("predict %s: %d clips scored (%d read from the workdir store), %d failed",
             run_dir, len(kept_ids), result.reused, len(result.failed))
    return result


def _rows_in(wstore: FeatureStore | None, key: str, ids: Sequence[str],
             hashes: dict[str, str]) -> dict[str, str]:
    """clip id -> id of the workdir store's row of the same audio (same content hash)."""
    if wstore is None or key not in wstore.keys():
        return {}
    done, _ = wstore.status(key)
    by_hash: dict[str, str] = {}
    for wid, h in sorted(done.items()):
        by_hash.setdefault(h, wid)
    return {c: by_hash[hashes[c]] for c in ids if c in hashes and hashes[c] in by_hash}


def _read_block(entry: dict[str, Any], header: SetHeader, wstore: FeatureStore | None,
                pstore: FeatureStore, ids: Sequence[str], reuse: dict[str, str]
                ) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """The run's columns of one set for ``ids`` (or its frame sequences, for a ragged field):
    reused rows from the workdir store, the others from the prediction store."""
    spec = header.fields.get(entry["field"])
    if spec is not None and spec.ragged:
        return _read_frames(entry["field"], header, wstore, pstore, ids, reuse)
    try:
        field_name, index, _ = resolve_field(header, entry["field"], entry.get("layer"), "mean")
    except FeatureError as exc:
        raise PredictError(f"feature set {header.key}: {exc}") from None
    X = np.zeros((len(ids), int(entry["dim"])), dtype=np.float32)
    ok = np.zeros(len(ids), dtype=bool)
    rows = np.array([c in reuse for c in ids], dtype=bool)
    for store, sel, names in ((wstore, rows, [reuse.get(c, "") for c in ids]),
                              (pstore, ~rows, list(ids))):
        where = np.flatnonzero(sel)
        if store is None or not len(where):
            continue
        values, found = store.read(header.key, field_name, [names[i] for i in where], index=index)
        values = values.reshape(len(where), -1).astype(np.float32)
        if values.shape[1] != X.shape[1]:
            raise PredictError(f"feature set {header.key} field {field_name} has {values.shape[1]} "
                               f"columns; the run was trained on {X.shape[1]}")
        X[where] = values
        ok[where] = found
    return X, ok


def _read_frames(field_name: str, header: SetHeader, wstore: FeatureStore | None,
                 pstore: FeatureStore, ids: Sequence[str], reuse: dict[str, str]
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """Frame sequences ``(T_i, D)`` of one ragged field; empty where a clip has none."""
    dim = int(np.prod(header.fields[field_name].shape))
    frames: list[np.ndarray] = [np.zeros((0, dim), np.float32)] * len(ids)
    ok = np.zeros(len(ids), dtype=bool)
    for store, names in ((wstore, {i: reuse[c] for i, c in enumerate(ids) if c in reuse}),
                         (pstore, {i: c for i, c in enumerate(ids) if c not in reuse})):
        if store is None or not names:
            continue
        arrays = store.read_sequences(header.key, field_name, list(names.values()))
        for i, a in zip(names, arrays):
            if a is not None:
                frames[i] = np.asarray(a, dtype=np.float32).reshape(len(a), dim)
                ok[i] = True
    return frames, ok


def _table(model: SavedModel, corpus: Corpus, ids: list[str], preds: Any) -> pd.DataFrame:
    where = corpus.sources(ids)
    table: dict[str, Any] = {"id": ids, "file": where["file"].to_numpy(),
                             "start": where["start"].to_numpy(), "end": where["end"].to_numpy()}
    names = prediction_columns(model)
    for task in model.tasks:
        for tg in task.targets:
            cols = names[(task.name, tg.name)]
            p = None if preds is None else preds[task.name][tg.name]
            if tg.kind == "classification":
                classes = list(tg.classes or ())
                table[cols[0]] = [] if p is None else [classes[int(i)] for i in p.values]
                if p is not None and p.probabilities is not None:
                    for j, cls in enumerate(classes):
                        table[f"p_{cols[0]}_{cls}"] = np.round(p.probabilities[:, j], 6)
            else:
                for j, c in enumerate(cols):
                    table[c] = [] if p is None else np.round(p.values[:, j].astype(float), 6)
    return pd.DataFrame(table)


__all__ = ["PREDICT_STORE", "PredictError", "PredictResult", "audio_corpus", "run_workdir",
           "default_store_dir", "extract_options", "prepare_set", "prediction_columns",
           "predict_clips"]
