"""Exports in other tools' folder layouts: fairseq-style frame files and hear-eval-kit memmaps.

``fairseq`` (what fairseq / emotion2vec / s3prl-style downstream code reads; emotion2vec's
``iemocap_downstream/data.py`` is the reader this follows), one file group per split prefix
(``train``, ``valid``, ``test``; ``all`` when the corpus has no split)::

    OUT/<prefix>.npy        float32 (sum of frames, dim): every clip's frames, one after another
    OUT/<prefix>.lengths    one integer per line: the clip's frame count (0 for a clip without
                            frames); a clip's rows start at the sum of the lengths before it
    OUT/<prefix>.ids        one clip id per line, the same order
    OUT/<prefix>.<column>   (per --label column) one ``<clip id>\\t<value>`` line per clip, as
                            emotion2vec's ``.emo`` files: the reader takes the line's second
                            whitespace-separated field; ``nan`` where a clip has no label

``hear`` (what hear-eval-kit's ``heareval.predictions`` reads for a scene task: one vector per
clip)::

    OUT/task_metadata.json              task_name, embedding_type "scene", prediction_type
                                        "multiclass", split_mode "trainvaltest", splits, evaluation
    OUT/labelvocabulary.csv             idx,label (classes in sorted order)
    OUT/<split>.embeddings.npy          raw float32 memmap (no .npy header), (clips, dim)
    OUT/<split>.embedding-dimensions.json   [clips, dim]
    OUT/<split>.target-labels.pkl       pickled list: one ``[label]`` per row
    OUT/<split>.json                    {clip id: [label]} in row order (hearpreprocess's file)

for ``<split>`` in ``train``, ``valid``, ``test``. Clips without a split or without a label in
the chosen column are left out (counted in the result).

Both are folders written like the single-file exports: everything goes into a temporary folder
beside ``out``, each file fsynced, and the folder is renamed into place; a previous export in
``out`` (it holds ``export.json``) is replaced, anything else there is refused.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from extract.export import ExportError, fixed_field
from extract.store import FeatureStore

log = logging.getLogger(__name__)

LAYOUTS = ("fairseq", "hear")
PREFIXES = {"Train": "train", "Val": "valid", "Test": "test"}
"""Corpus split -> file prefix (fairseq's and hear-eval-kit's split names)."""
UNSPLIT_PREFIX = "all"
MANIFEST = "export.json"
"""Written into every folder export: what it holds (and that ``export`` may replace it)."""
READ_CHUNK = 256
"""Clips per store read."""


@dataclass(frozen=True)
class FolderExport:
    """What a folder export wrote.

    Attributes:
        path: the folder.
        layout: ``fairseq`` or ``hear``.
        key, field: the set and field exported.
        clips: file prefix -> clips written under it.
        dim: values per frame (fairseq) or per vector (hear).
        frames: file prefix -> frames written (fairseq).
        left_out: why clips were left out -> how many.
    """

    path: Path
    layout: str
    key: str
    field: str
    clips: dict[str, int]
    dim: int
    frames: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)


def prefix_groups(ids: Sequence[str], split_of: Mapping[str, str] | None
                  ) -> tuple[dict[str, list[str]], int]:
    """Clip ids by file prefix, and the number left out for having no split.

    Without splits (``split_of`` None, or no clip in Train/Val/Test) every clip goes under
    ``all``; otherwise Train, Val and Test go under ``train``, ``valid``, ``test``.

    Example:
        >>> prefix_groups(["a", "b", "c"], {"a": "Train", "b": "Test", "c": ""})
        ({'train': ['a'], 'test': ['b']}, 1)
        >>> prefix_groups(["a"], None)
        ({'all': ['a']}, 0)
    """
    if split_of is None or not any(split_of.get(c) in PREFIXES for c in ids):
        return {UNSPLIT_PREFIX: list(ids)}, 0
    groups: dict[str, list[str]] = {}
    for split, prefix in PREFIXES.items():
        members = [c for c in ids if split_of.get(c) == split]
        if members:
            groups[prefix] = members
    return groups, sum(1 for c in ids if split_of.get(c) not in PREFIXES)


def _check_out(out: Path) -> None:
    if not out.parent.is_dir():
        raise ExportError(f"the folder of --out {out} does not exist ({out.parent}); create it "
                          f"first (mkdir -p {out.parent}) or choose another path")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ExportError(f"--out {out} exists and is not a folder export of this tool (no "
                          f"{MANIFEST}); choose a new folder or remove it")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_folder(out: Path, manifest: dict[str, Any], fill: Callable[[Path], None]) -> None:
    """Write a folder export through a temporary folder beside ``out`` (module docstring)."""
    tag = uuid.uuid4().hex[:8]
    tmp = out.with_name(f".{out.name}.{tag}.tmp")
    old = out.with_name(f".{out.name}.{tag}.old")
    try:
        tmp.mkdir()
        fill(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        for p in tmp.iterdir():
            _fsync(p)
        _fsync(tmp)
        if out.exists():
            os.rename(out, old)  # a previous export of this tool (checked before writing)
        os.rename(tmp, out)
        _fsync(out.parent)
    except OSError as exc:
        if old.exists() and not out.exists():
            os.rename(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        kept = f"{out} was left as it was" if out.exists() else f"no {out} was written"
        raise ExportError(f"cannot write {out}: {what}; {kept}. Free space or choose another "
                          f"--out and rerun.") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _stored_ids(store: FeatureStore, key: str, only: Sequence[str] | None) -> list[str]:
    done, _ = store.status(key)
    if only is None:
        return sorted(done)
    wanted = set(only)
    return sorted(c for c in done if c in wanted)


def _label_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "nan"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def export_fairseq(store: FeatureStore, key: str, field: str, out: str | os.PathLike, *,
                   split_of: Mapping[str, str] | None = None,
                   only: Sequence[str] | None = None, labels: Any = None) -> FolderExport:
    """Write a ragged field's frame sequences in the fairseq layout (module docstring).

    Args:
        store: the store.
        key: the set's key.
        field: a ragged field (``frames_l12``, ``logmel``, ``lld``).
        out: the folder to write.
        split_of: clip id -> ``Train`` / ``Val`` / ``Test`` / ``''`` (the corpus's split); None
            writes every clip under ``all``.
        only: keep only these clip ids.
        labels: a DataFrame indexed by clip id: one ``<prefix>.<column>`` file per column
            (a clip without a label row: ``nan``).

    Raises:
        ExportError: the field is not a frame sequence, a label holds whitespace (the files
            are whitespace-separated), ``out`` is not ours, or the folder could not be written.
    """
    out = Path(out)
    header = store.header(key)
    spec = header.fields.get(field)
    if spec is None:
        raise ExportError(f"set {key} has no field {field!r}; fields: {sorted(header.fields)}")
    if not spec.ragged:
        ragged = ", ".join(sorted(k for k, f in header.fields.items() if f.ragged))
        choice = ragged or ("this set stores none: extract with --frames-layers (SSL), "
                            "--level lld (openSMILE) or a logmel:N spec")
        raise ExportError(f"field {field!r} of {key} is one vector per clip; --format fairseq "
                          f"writes frame sequences: choose one with --field ({choice})")
    _check_out(out)
    dim = int(np.prod(spec.shape)) if spec.shape else 1
    groups, unsplit = prefix_groups(_stored_ids(store, key, only), split_of)
    label_files: dict[str, list[str]] = {}
    if labels is not None:
        table = labels.reindex([c for ids in groups.values() for c in ids])
        for col in table.columns:
            texts = [_label_text(v) for v in table[col]]
            bad = [t for t in texts if not t or any(ch.isspace() for ch in t)]
            if bad:
                raise ExportError(f"label column {col!r} has values with whitespace (e.g. "
                                  f"{bad[0]!r}), which a `<id> <label>` line cannot hold; "
                                  f"leave it out of --label, or rename those classes")
            label_files[str(col)] = texts
    counts = {p: len(ids) for p, ids in groups.items()}
    frames: dict[str, int] = {}

    def fill(folder: Path) -> None:
        at = 0
        for prefix, ids in groups.items():
            lengths = []
            for lo in range(0, len(ids), READ_CHUNK):  # pass 1: lengths (bounded memory)
                lengths += [0 if s is None else len(s) for s in
                            store.read_sequences(key, field, ids[lo:lo + READ_CHUNK])]
            total = int(sum(lengths))
            data = np.lib.format.open_memmap(folder / f"{prefix}.npy", mode="w+",
                                             dtype=np.float32, shape=(total, dim))
            row = 0
            for lo in range(0, len(ids), READ_CHUNK):  # pass 2: the frames
                for s in store.read_sequences(key, field, ids[lo:lo + READ_CHUNK]):
                    if s is not None and len(s):
                        data[row:row + len(s)] = s.reshape(len(s), dim)
                        row += len(s)
            data.flush()
            del data
            frames[prefix] = total
            (folder / f"{prefix}.lengths").write_text("".join(f"{n}\n" for n in lengths))
            (folder / f"{prefix}.ids").write_text("".join(f"{c}\n" for c in ids))
            for col, texts in label_files.items():
                mine = texts[at:at + len(ids)]
                (folder / f"{prefix}.{col}").write_text(
                    "".join(f"{c}\t{t}\n" for c, t in zip(ids, mine)))
            at += len(ids)

    left_out = {"no split": unsplit} if unsplit else {}
    manifest = {"layout": "fairseq", "key": key, "spec": header.spec, "field": field,
                "dim": dim, "clips": counts, "frames": frames,  # filled while writing
                "label_files": sorted(label_files), "left_out": left_out}
    _write_folder(out, manifest, fill)
    result = FolderExport(out, "fairseq", key, field, counts, dim, frames, left_out)
    log.info("exported %s field %s in the fairseq layout: %s -> %s", key, field, counts, out)
    return result


def export_hear(store: FeatureStore, key: str, field: str, out: str | os.PathLike, *,
                split_of: Mapping[str, str], label: Mapping[str, Any], task_name: str,
                index: Any = None) -> FolderExport:
    """Write a fixed field in hear-eval-kit's layout for a scene task (module docstring).

    Args:
        store: the store.
        key: the set's key.
        field: a fixed field (``pooled_mean``, ``functionals``).
        out: the folder to write.
        split_of: clip id -> ``Train`` / ``Val`` / ``Test`` / ``''``.
        label: clip id -> class (a label column; NaN / None: no label).
        task_name: ``task_metadata.json``'s task_name.
        index: optional index into each row (a layer position of a ``(layers, dim)`` field).

    Raises:
        ExportError: a ragged field, a numeric label column that is not classes, a split
            without labelled clips, ``out`` not ours, or the folder could not be written.
    """
    out = Path(out)
    header = store.header(key)
    fixed_field(header, field, writes="--format hear writes one vector per clip (a scene task)")
    _check_out(out)
    ids = _stored_ids(store, key, None)
    texts = {c: _label_text(label.get(c)) for c in ids}
    numeric = [v for v in label.values() if isinstance(v, (float, np.floating))
               and not np.isnan(v) and not float(v).is_integer()]
    if numeric:
        raise ExportError(f"the label column has non-integer numbers (e.g. {numeric[0]!r}); "
                          f"hear-eval-kit's scene tasks are classes (multiclass): choose a "
                          f"class column with --label")
    unlabelled = sum(1 for c in ids if texts[c] == "nan")
    groups, unsplit = prefix_groups([c for c in ids if texts[c] != "nan"], split_of)
    missing = [p for p in PREFIXES.values() if p not in groups]
    if missing:
        per_split = {p: len(g) for p, g in groups.items()}
        raise ExportError(f"hear-eval-kit reads train, valid and test; no labelled, stored clip "
                          f"is in {', '.join(missing)} (labelled clips per split: {per_split})")
    classes = sorted({texts[c] for g in groups.values() for c in g})
    counts = {p: len(g) for p, g in groups.items()}
    dim = 0

    def fill(folder: Path) -> None:
        nonlocal dim
        metadata = {"task_name": task_name, "version": "vocal-probe export",
                    "embedding_type": "scene", "prediction_type": "multiclass",
                    "split_mode": "trainvaltest", "splits": list(PREFIXES.values()),
                    "evaluation": ["top1_acc"], "sample_duration": None}
        (folder / "task_metadata.json").write_text(json.dumps(metadata, indent=2))
        (folder / "labelvocabulary.csv").write_text(
            "idx,label\n" + "".join(f"{i},{_csv_cell(c)}\n" for i, c in enumerate(classes)))
        for prefix, members in groups.items():
            X, _ = store.read(key, field, members, index=index)
            X = X.reshape(len(members), -1).astype(np.float32)
            dim = int(X.shape[1])
            memmap = np.memmap(folder / f"{prefix}.embeddings.npy", dtype=np.float32,
                               mode="w+", shape=X.shape)
            memmap[:] = X
            memmap.flush()
            del memmap
            (folder / f"{prefix}.embedding-dimensions.json").write_text(json.dumps(list(X.shape)))
            with open(folder / f"{prefix}.target-labels.pkl", "wb") as fh:
                pickle.dump([[texts[c]] for c in members], fh)
            (folder / f"{prefix}.json").write_text(
                json.dumps({c: [texts[c]] for c in members}, indent=1))

    left_out = {k: v for k, v in (("no split", unsplit), ("no label", unlabelled)) if v}
    manifest = {"layout": "hear", "key": key, "spec": header.spec, "field": field,
                "index": index, "clips": counts, "classes": classes, "left_out": left_out}
    _write_folder(out, manifest, fill)
    log.info("exported %s field %s in the hear-eval-kit layout: %s -> %s", key, field, counts, out)
    return FolderExport(out, "hear", key, field, counts, dim, {}, left_out)


def _csv_cell(text: str) -> str:
    """A CSV cell: quoted when it holds a comma, a quote or a line break."""
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
