"""Writes the single-file store of this folder with the code of commit a79f7eb (the last one
whose extract/store.py wrote one ``features.h5`` per workdir); kept to say how it was made.

    git checkout a79f7eb && PYTHONPATH=$PWD python tests/extract/legacy_store/make.py

``compacted/``: two sets compacted into ``features.h5`` (a failure and a note included);
``pending/``: the same, then rows of a third extraction left in the journal as by a kill before
its compaction (a new clip, a newer value of c001, a failure replaced by a row).

``beside/``: ``pending/`` moved into set files by the new code (``FeatureStore(wd).compact()``),
then this commit's code run on it with :func:`write_beside`, as an older checkout used on a
workdir that newer code had converted: it sees no sets, journals three records of toy-abc (an
unchanged row, a new clip, a failure over a stored row of the same audio) and a new set
late-ghi, and compacts them into a new ``features.h5`` beside ``features/``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from extract.base import FieldSpec
from extract.store import FeatureStore, SetHeader

HERE = Path(__file__).resolve().parent


def header() -> SetHeader:
    return SetHeader(
        key="toy-abc", name="toy", spec="toy:x", config={"extractor": "toy", "dims": 4},
        config_hash="abc", provenance={"made_by": "a79f7eb"},
        fields={"vec": FieldSpec((4,), "float32", False, {"columns": list("abcd")}),
                "pooled": FieldSpec((3, 4), "float16", False, {"layers": [0, 6, 12]}),
                "frames": FieldSpec((4,), "float32", True)})


def small_header() -> SetHeader:
    return SetHeader(key="small-def", name="small", spec="small:y",
                     config={"extractor": "small", "dims": 2}, config_hash="def",
                     fields={"functionals": FieldSpec((2,), "float32", False, {})})


def values(i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    return {"vec": rng.standard_normal(4).astype("f4"),
            "pooled": rng.standard_normal((3, 4)).astype("f2"),
            "frames": rng.standard_normal((2 + i % 5, 4)).astype("f4")}


def write(wd: Path, *, pending: bool) -> None:
    shutil.rmtree(wd, ignore_errors=True)
    store = FeatureStore(wd)
    with store.writer(header(), flush_rows=4) as w:
        for i in range(10):
            w.add(f"c{i:03d}", f"h{i}", values(i))
        w.fail("c010", "h10", "c010.wav: unreadable")
        w.note("c002", "shorter than the receptive field")
    with store.writer(small_header()) as w:
        for i in range(3):
            w.add(f"c{i:03d}", f"s{i}", {"functionals": np.full(2, i, "f4")})
    store.compact()
    if pending:
        with store.writer(header(), flush_rows=2) as w:
            w.add("c011", "h11", values(11))
            w.add("c001", "h1-new", values(101))
            w.add("c010", "h10", values(10))
    (wd / "extract.lock").unlink(missing_ok=True)


def write_beside(wd: Path) -> None:
    store = FeatureStore(wd)
    with store.writer(header(), flush_rows=2) as w:
        w.add("c000", "h0", values(0))
        w.add("c012", "h12", values(12))
        w.fail("c003", "h3", "c003.wav: file not found")
    late = SetHeader(key="late-ghi", name="late", spec="late:z",
                     config={"extractor": "late", "dims": 3}, config_hash="ghi",
                     fields={"functionals": FieldSpec((3,), "float32", False, {})})
    with store.writer(late) as w:
        for i in range(2):
            w.add(f"c{i:03d}", f"g{i}", {"functionals": np.full(3, i, "f4")})
    store.compact()
    (wd / "extract.lock").unlink(missing_ok=True)


if __name__ == "__main__":
    write(HERE / "compacted", pending=False)
    write(HERE / "pending", pending=True)
