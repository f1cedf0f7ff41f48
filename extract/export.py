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


def export_matrix(store: FeatureStore, key: str, field: str, out: str | os.PathLike, *,
                  index: Any = None, only: Collection[str] | None = None,
                  sources: Callable[[list[str]], Any] | None = None) -> ExportResult:
    """Write a fixed field of a set, one row per stored clip sorted by id, to ``out``.

    Args:
        store: the store.
        key: the set's key.
        field: a fixed (not ragged) field of the set.
        out: ``.npz`` (arrays ``ids`` and ``X``), ``.csv`` or ``.parquet`` (an ``id`` column,
            then one column per value, named by the field's ``columns`` attribute when it has
            one).
        index: optional index into each row (a layer position of a ``(layers, dim)`` field).
        only: keep only these clip ids (e.g. one split).
        sources: for a corpus with segments, ``ids -> DataFrame`` with columns ``file``,
            ``start``, ``end`` (``Corpus.sources``): csv/parquet gain those three columns after
            ``id``, npz the arrays ``files``, ``starts``, ``ends`` (plural like ``ids``:
            ``np.savez`` reserves the name ``file``).

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
    header = store.header(key)
    spec = header.fields.get(field)
    if spec is None:
        raise ExportError(f"set {key} has no field {field!r}; fields: {sorted(header.fields)}")
    if spec.ragged:
        fixed = sorted(k for k, f in header.fields.items() if not f.ragged)
        raise ExportError(f"field {field!r} of {key} is ragged (a frame sequence per clip) and "
                          f"export writes one row per clip; choose a fixed field with --field: "
                          f"{', '.join(fixed) or 'none in this set'}")
    done, _ = store.status(key)
    ids = sorted(done if only is None else (c for c in done if c in set(only)))
    X, _present = store.read(key, field, ids, index=index)
    X = X.reshape(len(ids), -1)
    where = None if sources is None else sources(ids)
    _write_atomic(out, suffix, ids, X, spec.attrs.get("columns"), where)
    log.info("exported %s field %s: %d x %d -> %s", key, field, len(ids), X.shape[1], out)
    return ExportResult(out, key, field, len(ids), int(X.shape[1]))


def _write_atomic(out: Path, suffix: str, ids: list[str], X: np.ndarray,
                  columns: list[str] | None, where: Any = None) -> None:
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if suffix == ".npz":
                extra = {} if where is None else {"files": where["file"].to_numpy(str),
                                                  "starts": where["start"].to_numpy(float),
                                                  "ends": where["end"].to_numpy(float)}
                np.savez(fh, ids=np.array(ids), X=X, **extra)
            else:
                import pandas as pd

                cols = columns if columns and len(columns) == X.shape[1] else [
                    f"f{i}" for i in range(X.shape[1])]
                df = pd.DataFrame(X.astype(np.float32), columns=cols)
                df.insert(0, "id", ids)
                if where is not None:
                    for pos, col in enumerate(("file", "start", "end"), start=1):
                        df.insert(pos, col, where[col].to_numpy())
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
