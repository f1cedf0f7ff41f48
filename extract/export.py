"""Export one feature matrix of the store to ``.npz``, ``.csv`` or ``.parquet``.

The file appears complete or not at all: it is written under a temporary name in the same
folder, flushed to disk and renamed over ``out``. A failure (a full disk, a missing folder)
leaves an existing ``out`` as it was and no temporary file behind.

Example:
    >>> import tempfile, numpy as np
    >>> from extract.base import FieldSpec
    >>> from extract.store import FeatureStore, SetHeader
    >>> wd = tempfile.mkdtemp()
    >>> h = SetHeader("toy-0", "toy", "toy:x", {}, "0", {"v": FieldSpec((2,), "float32", False)})
    >>> with FeatureStore(wd).writer(h) as w:
    ...     w.add("a", "h", {"v": np.ones(2, np.float32)})
    >>> export_matrix(FeatureStore(wd), "toy-0", "v", f"{wd}/v.npz").n_rows
    1
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extract.base import FieldSpec
from extract.store import FeatureStore

log = logging.getLogger(__name__)

FORMATS = (".npz", ".csv", ".parquet")


class ExportError(ValueError):
    """The export cannot be done as asked; the message names the value and what to do."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_matrix` wrote."""

    path: Path
    key: str
    field: str
    n_rows: int
    n_cols: int


def column_names(field: str, spec: FieldSpec, index: Any = None) -> list[str]:
    """The names of a field's exported columns (one row per clip, ``index`` applied).

    * a field with a ``columns`` attribute (openSMILE): those names;
    * an SSL pooled field (``layers`` and ``pooling`` attributes, shape ``(layers, dim)``):
      ``l<layer>_<pooling>_<i>``, for the layer ``index`` picks, or every stored layer;
    * a log-mel field (``n_mels`` wide): ``mel_<band>``;
    * a scalar field: its name; anything else ``<field>_<i>``.

    Example:
        >>> spec = FieldSpec((13, 2), "float16", False, {"layers": list(range(13)), "pooling": "mean"})
        >>> column_names("pooled_mean", spec, 12)
        ['l12_mean_0', 'l12_mean_1']
        >>> column_names("pooled_mean", spec)[:3]
        ['l0_mean_0', 'l0_mean_1', 'l1_mean_0']
    """
    attrs = spec.attrs or {}
    width = int(np.prod(np.empty(spec.shape)[() if index is None else index].shape, dtype=int))
    columns = attrs.get("columns")
    if columns and len(columns) == width:
        return [str(c) for c in columns]
    layers = attrs.get("layers")
    if layers is not None and len(spec.shape) == 2:
        pooling = attrs.get("pooling") or field.removeprefix("pooled_")
        if index is None:
            picked = list(layers)
        elif isinstance(index, (int, np.integer)):
            picked = [layers[int(index)]]
        else:
            picked = None
        if picked is not None and len(picked) * spec.shape[1] == width:
            return [f"l{layer}_{pooling}_{i}" for layer in picked for i in range(spec.shape[1])]
    if field == "logmel":
        return [f"mel_{i}" for i in range(width)]
    if spec.shape == () and width == 1:
        return [field]
    return [f"{field}_{i}" for i in range(width)]



def fixed_field(header: Any, field: str, *, writes: str) -> FieldSpec:
    """The spec of ``field``, a field of one vector per clip.

    Args:
        header: the set's header (:class:`extract.store.SetHeader`).
        field: the field name.
        writes: what the caller writes, for the message (``export writes one row per clip``).

    Raises:
        ExportError: no such field, or a frame sequence (names the set's fixed fields).
    """
    spec = header.fields.get(field)
    if spec is None:
        raise ExportError(f"set {header.key} has no field {field!r}; fields: {sorted(header.fields)}")
    if spec.ragged:
        fixed = sorted(k for k, f in header.fields.items() if not f.ragged)
        raise ExportError(f"field {field!r} of {header.key} is ragged (a frame sequence per clip) "
                          f"and {writes}; choose a fixed field with --field: "
                          f"{', '.join(fixed) or 'none in this set'}")
    return spec


def export_matrix(store: FeatureStore, key: str, field: str, out: str | os.PathLike, *,
                  index: Any = None, only: Collection[str] | None = None,
                  sources: Callable[[list[str]], Any] | None = None,
                  labels: Any = None) -> ExportResult:
    """Write a fixed field of a set, one row per stored clip sorted by id, to ``out``.

    Args:
        store: the store.
        key: the set's key.
        field: a fixed (not ragged) field of the set.
        out: ``.npz`` (arrays ``ids``, ``X`` and ``columns``, the names of X's columns),
            ``.csv`` or ``.parquet`` (an ``id`` column, then one column per value), the columns
            named by :func:`column_names` (``l12_mean_0``, openSMILE's own names).
        index: optional index into each row (a layer position of a ``(layers, dim)`` field).
        only: keep only these clip ids (e.g. one split).
        sources: for a corpus with segments, ``ids -> DataFrame`` with columns ``file``,
            ``start``, ``end`` (``Corpus.sources``): csv/parquet gain those three columns after
            ``id``, npz the arrays ``files``, ``starts``, ``ends`` (plural like ``ids``:
            ``np.savez`` reserves the name ``file``).
        labels: a DataFrame indexed by clip id with the columns ``split``, ``group`` and the
            label columns: csv/parquet gain them before the features (empty cells for a clip
            without a label), npz the arrays ``split``, ``group``, ``label_columns`` (their
            names) and one ``label_<column>`` array each (numbers as float with NaN for a
            missing label, text as str with '').

    Returns:
        An :class:`ExportResult`.

    Raises:
        ExportError: unknown suffix, missing output folder, ragged or unknown field, or the
            file could not be written (disk full: the old file is intact).
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"--out must end in {', '.join(FORMATS)}, got {out.name!r}")
    if not out.parent.is_dir():
        raise ExportError(f"the folder of --out {out} does not exist ({out.parent}); create it "
                          f"first (mkdir -p {out.parent}) or choose another path")
    spec = fixed_field(store.header(key), field, writes="export writes one row per clip")
    done, _ = store.status(key)
    ids = sorted(done if only is None else (c for c in done if c in set(only)))
    X, _present = store.read(key, field, ids, index=index)
    X = X.reshape(len(ids), -1)
    where = None if sources is None else sources(ids)
    names = column_names(field, spec, index)
    table = None
    if labels is not None:
        table = labels.reindex(ids)
        clash = sorted(set(table.columns) & (set(names) | {"id", "file", "start", "end"}))
        if clash:
            raise ExportError(f"label column(s) {clash} have the names of exported columns; "
                              f"export without --with-labels, or rename them in the label table")
    _write_atomic(out, suffix, ids, X, names, where, table)
    log.info("exported %s field %s: %d x %d -> %s", key, field, len(ids), X.shape[1], out)
    return ExportResult(out, key, field, len(ids), int(X.shape[1]))


def _npz_labels(table: Any) -> dict[str, np.ndarray]:
    """The label arrays of an npz export: numbers as float (NaN missing), text as str ('')."""
    import pandas as pd

    out = {"label_columns": np.array([str(c) for c in table.columns if c not in ("split", "group")],
                                     dtype=str)}
    for col in table.columns:
        values = table[col]
        name = col if col in ("split", "group") else f"label_{col}"
        if pd.api.types.is_numeric_dtype(values) and col not in ("split", "group"):
            out[name] = values.to_numpy(dtype=float)
        else:
            out[name] = values.astype(object).where(values.notna(), "").to_numpy(dtype=str)
    return out


def _write_atomic(out: Path, suffix: str, ids: list[str], X: np.ndarray,
                  columns: list[str], where: Any = None, labels: Any = None) -> None:
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if suffix == ".npz":
                extra = {} if where is None else {"files": where["file"].to_numpy(str),
                                                  "starts": where["start"].to_numpy(float),
                                                  "ends": where["end"].to_numpy(float)}
                if labels is not None:
                    extra.update(_npz_labels(labels))
                np.savez(fh, ids=np.array(ids), X=X, columns=np.array(columns, dtype=str),
                         **extra)
            else:
                import pandas as pd

                df = pd.DataFrame(X.astype(np.float32), columns=columns)
                front = {"id": ids}
                if where is not None:
                    front.update({col: where[col].to_numpy() for col in ("file", "start", "end")})
                if labels is not None:
                    front.update({col: labels[col].to_numpy() for col in labels.columns})
                df = pd.concat([pd.DataFrame(front), df], axis=1)
                if suffix == ".csv":
                    df.to_csv(fh, index=False)
                else:
                    df.to_parquet(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        kept = f"{out} was left as it was" if out.exists() else f"no {out} was written"
        raise ExportError(f"cannot write {out}: {what}; {kept}. Free space or choose another "
                          f"--out and rerun.") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
