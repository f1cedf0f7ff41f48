"""Reader for Hugging Face ``datasets`` datasets saved with ``save_to_disk``.

Read with the ``datasets`` package (``pip install datasets``, or the ``[hf]`` extra). The folder
holds one ``Dataset`` or a ``DatasetDict`` (one sub-folder per split).

Decoding goes through the project's own loader, never through ``datasets``: the audio column is
read undecoded (``Audio(decode=False)``: the stored file bytes and/or a path) and every clip's
bytes are written once, unchanged, to ``WORKDIR/hf_audio/<split>/row<row>.<ext>``; extraction then
reads those files like any other corpus. The bytes are the original encoded file, so resampling
and the content hash are exactly those of the same file in a csv corpus. A row that holds only
a path uses that file in place (relative paths start at the dataset folder). A rerun rewrites
only files whose bytes changed, so the hash cache and the store see the same files.

- Clip id: the ``id`` (or ``clip_id``/``file_id``) column when it holds unique values, else
  ``<split>/<row>`` (``<row>`` alone for a single ``Dataset``).
- Split: a ``split`` column if there is one, else the ``DatasetDict`` key (``train``,
  ``validation``, ``test`` and their aliases; another name leaves the split unknown).
- Group: a ``speaker``/``speaker_id``/``group``/``subject`` column.
- Labels: every other column of numbers (float), text or ``ClassLabel`` (the class names);
  ``column`` picks some (comma-separated). Columns of other types (lists, images) are skipped.

A row whose audio cell holds neither bytes nor a path is kept as a failed clip naming the row;
bytes that are not audio fail at extraction with the decoder's reason and the file's name
(``hf_audio/<split>/row<row>.<ext>``: it names the split and the row).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from data.corpora.registry import GROUP_COLUMNS, register_layout
from data.corpus import Corpus, CorpusError, assemble_corpus, examples, find_column, normalise_split

logger = logging.getLogger(__name__)

INSTALL = "pip install datasets (or pip install -e '.[hf]')"
AUDIO_DIR = "hf_audio"
ID_COLUMNS = ("id", "clip_id", "file_id")
_BATCH = 256


def _datasets():
    try:
        import datasets
    except ImportError:
        raise CorpusError(f"the hf layout needs the datasets package: {INSTALL}") from None
    return datasets


def _suffix(path: object) -> str:
    """Extension of a stored audio path (``.wav``), or ``.audio`` when it has none usable."""
    suffix = PurePosixPath(str(path or "")).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".audio"


def _write_if_changed(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically unless the file already holds exactly it."""
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def _column(ds, name: str) -> list:
    """The stored values of one non-audio column (respects an indices mapping; no decoding)."""
    return ds.select_columns([name]).with_format("arrow")[:].column(name).to_pylist()


def _label_values(ds, name: str) -> np.ndarray | None:
    """A column as float or text (ClassLabel as class names); None for other feature types."""
    datasets = _datasets()
    feature = ds.features[name]
    values = _column(ds, name)
    if isinstance(feature, datasets.ClassLabel):
        return np.array([np.nan if v is None or v < 0 else feature.names[v] for v in values], dtype=object)
    if isinstance(feature, datasets.Value):
        dtype = str(feature.dtype)
        if dtype.startswith(("int", "uint", "float", "bool")):
            return np.array([np.nan if v is None else float(v) for v in values], dtype=float)
        if dtype in ("string", "large_string"):
            return np.array([np.nan if v is None else str(v) for v in values], dtype=object)
    return None


@register_layout("hf")
def read_hf_corpus(root: Path, *, labels: Path | None = None, column: str | None = None,
                   workdir: Path | None = None) -> Corpus:
    """Read a ``datasets`` folder written by ``save_to_disk``.

    Args:
        root: the folder ``save_to_disk`` wrote (a Dataset or a DatasetDict).
        labels: not used by this layout; must be None.
        column: comma-separated label columns (default: every number, text and class column).
        workdir: where the audio is written out (``WORKDIR/hf_audio``); required.

    Returns:
        The corpus; ``meta["dataset"]`` records the splits, their row counts and fingerprints.

    Raises:
        CorpusError: datasets missing (says what to install), no workdir, the folder is not a
            saved dataset, there is no ``Audio`` column, a named column does not exist, or the
            id column repeats values.
    """
    root = Path(root)
    if labels is not None:
        raise CorpusError("the hf layout reads labels from the dataset's own columns; leave out "
                          "--labels (choose label columns with --column)")
    if workdir is None:
        raise CorpusError("the hf layout writes each clip's audio bytes under the workdir "
                          f"({AUDIO_DIR}/); give --workdir")
    datasets = _datasets()
    try:
        loaded = datasets.load_from_disk(str(root))
    except Exception as exc:  # FileNotFoundError, ValueError, arrow errors: all one answer
        raise CorpusError(f"{root} is not a dataset saved with save_to_disk ({type(exc).__name__}: "
                          f"{exc}); point --corpus at the folder that holds dataset_dict.json or "
                          "state.json") from exc
    parts = dict(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else {"": loaded}
    if not parts:
        raise CorpusError(f"{root}: the DatasetDict holds no split")
    wanted = [c.strip() for c in column.split(",") if c.strip()] if column else None

    problems: list[str] = []
    audio: dict[str, str] = {}
    split_of: dict[str, str] = {}
    group_of: dict[str, str] = {}
    errors: dict[str, str] = {}
    label_frames: list[pd.DataFrame] = []
    meta_splits: dict[str, dict] = {}
    out_root = Path(workdir) / AUDIO_DIR
    for split_name, ds in parts.items():
        where = f"split {split_name!r}" if split_name else "the dataset"
        audio_cols = [n for n, f in ds.features.items() if isinstance(f, datasets.Audio)]
        if not audio_cols:
            raise CorpusError(f"{root}: {where} has no Audio column; columns: "
                              f"{examples(list(ds.features), 50)}; cast the audio column with "
                              "dataset.cast_column(name, datasets.Audio()) before save_to_disk")
        audio_col = audio_cols[0]
        if len(audio_cols) > 1:
            problems.append(f"{where}: several Audio columns ({examples(audio_cols)}); used {audio_col!r}")
        frame = pd.DataFrame(index=pd.RangeIndex(len(ds)))
        names = [n for n in ds.features if n != audio_col]
        probe = pd.DataFrame({n: [] for n in names})
        id_col = find_column(probe, ID_COLUMNS)
        split_col = find_column(probe, ["split"])
        group_col = find_column(probe, GROUP_COLUMNS)
        reserved = {c for c in (id_col, split_col, group_col) if c}
        if wanted is not None:
            absent = [c for c in wanted if c not in names]
            if absent:
                raise CorpusError(f"{root}: {where} has no column {examples(absent)}; its columns: "
                                  f"{examples(names, 50)}")
        label_names = [n for n in names if n not in reserved and (wanted is None or n in wanted)]
        for n in label_names:
            values = _label_values(ds, n)
            if values is None:
                if wanted is not None:
                    raise CorpusError(f"{root}: column {n!r} holds {ds.features[n]!r}, not numbers, "
                                      "text or classes; choose other columns with --column")
                problems.append(f"{where}: column {n!r} ({type(ds.features[n]).__name__}) is not a "
                                "label type; skipped")
                continue
            frame[n] = values
        ids = _row_ids(ds, id_col, split_name, root, where)
        frame.index = pd.Index(ids, name="clip_id")
        clash = [i for i in ids if i in audio]
        if clash:
            raise CorpusError(f"{root}: clip id(s) {examples(clash)} appear in more than one split; "
                              "make the id column unique across splits")
        splits = _column(ds, split_col) if split_col else None
        groups = _column(ds, group_col) if group_col else None
        canon = normalise_split(split_name) if split_name else ""
        if canon is None:
            problems.append(f"{where}: the split name {split_name!r} is not train/validation/test; "
                            "its clips have split ''")
            canon = ""
        undecoded = ds.cast_column(audio_col, datasets.Audio(decode=False)).select_columns([audio_col])
        folder = out_root / (split_name or "all")
        row = 0
        for batch in undecoded.with_format("arrow").iter(batch_size=_BATCH):
            cells = batch.column(audio_col).to_pylist()
            for cell in cells:
                cid = ids[row]
                stored = (cell or {}).get("bytes")
                path = (cell or {}).get("path")
                if stored:
                    target = folder / f"row{row}{_suffix(path)}"
                    _write_if_changed(target, stored)
                    audio[cid] = str(target.absolute())
                elif path:
                    p = Path(path)
                    audio[cid] = str((p if p.is_absolute() else root / p).absolute())
                else:
                    audio[cid] = str((folder / f"row{row}.missing").absolute())
                    errors[cid] = (f"{where} row {row} ({audio_col!r}): the audio cell holds neither "
                                   "bytes nor a path; fix the dataset or drop the row")
                if splits is not None:
                    value = normalise_split(splits[row])
                    if value is None:
                        errors.setdefault(cid, f"{where} row {row}: split {splits[row]!r} is not "
                                               "train/val/valid/dev/test; fix the value")
                        value = ""
                    split_of[cid] = value
                else:
                    split_of[cid] = canon
                group_of[cid] = "" if groups is None or groups[row] is None else str(groups[row])
                row += 1
        label_frames.append(frame)
        meta_splits[split_name or ""] = {"rows": len(ds), "fingerprint": getattr(ds, "_fingerprint", None),
                                         "audio_column": audio_col}
    if errors:
        problems.append(f"{len(errors)} row(s) cannot be extracted ({examples(sorted(errors))}); "
                        "each is recorded as a failed clip")
    table = pd.concat(label_frames, axis=0, sort=False)
    info = next(iter(parts.values())).info
    meta = {"dataset": {"name": info.dataset_name or None,
                        "version": None if info.version is None else str(info.version),
                        "splits": meta_splits, "datasets": datasets.__version__}}
    return assemble_corpus(
        root, "hf",
        audio=audio,
        labels=table,
        split=pd.Series(split_of, dtype=object),
        group=pd.Series(group_of, dtype=object),
        problems=problems,
        audio_where=f"{root} (the dataset's audio column)",
        audio_listed=True,
        errors=errors,
        meta=meta,
    )


def _row_ids(ds, id_col: str | None, split_name: str, root: Path, where: str) -> list[str]:
    """Clip ids of one split: the id column's values, else ``<split>/<row>``."""
    if id_col is not None:
        values = [None if v is None else str(v).strip() for v in _column(ds, id_col)]
        if all(values) and len(set(values)) == len(values):
            return values
        dup = pd.Series(values)
        repeated = dup[dup.duplicated() | dup.isna()].astype(str).unique()
        raise CorpusError(f"{root}: {where}: column {id_col!r} is empty or repeats values "
                          f"({examples(list(repeated))}); make it unique or rename it")
    prefix = f"{split_name}/" if split_name else ""
    return [f"{prefix}{i}" for i in range(len(ds))]


__all__ = ["AUDIO_DIR", "read_hf_corpus"]
