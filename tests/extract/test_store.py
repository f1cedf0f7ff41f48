"""The feature store: journal + compaction, aligned reads, newest record wins, refusals."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from extract.base import FieldSpec
from extract.lock import WorkdirBusy, WorkdirLock
from extract.store import (SCHEMA_VERSION, ConfigMismatch, FeatureStore, SchemaMismatch,
                           SetHeader)


def _header(key="toy-abc", dims=4, layers=3, cfg=None):
    return SetHeader(
        key=key, name="toy", spec="toy:x", config=cfg or {"extractor": "toy", "dims": dims},
        config_hash="abc", provenance={"numpy": np.__version__},
        fields={"vec": FieldSpec((dims,), "float32", False, {"columns": list("abcd")[:dims]}),
                "pooled": FieldSpec((layers, dims), "float16", False, {"layers": [0, 6, 12]}),
                "frames": FieldSpec((dims,), "float32", True)})


def _values(i, dims=4, layers=3, frames=None):
    rng = np.random.default_rng(i)
    return {"vec": rng.standard_normal(dims).astype("f4"),
            "pooled": rng.standard_normal((layers, dims)).astype("f2"),
            "frames": rng.standard_normal((frames if frames is not None else 2 + i % 5, dims)).astype("f4")}


def _fill(store, ids, header=None, flush_rows=3):
    header = header or _header()
    with store.writer(header, flush_rows=flush_rows) as w:
        for i in ids:
            w.add(f"c{i:03d}", f"h{i}", _values(i))
    return header


def _check(store, ids):
    key = "toy-abc"
    want = [f"c{i:03d}" for i in ids]
    X, present = store.read(key, "vec", want)
    assert present.all()
    for row, i in zip(X, ids):
        np.testing.assert_array_equal(row, _values(i)["vec"])
    L, _ = store.read(key, "pooled", want, index=1)
    for row, i in zip(L, ids):
        np.testing.assert_array_equal(row, _values(i)["pooled"][1])
    for cid, i in zip(want, ids):
        np.testing.assert_array_equal(store.read_sequence(key, "frames", cid), _values(i)["frames"])


def test_rows_readable_from_journal_then_after_compaction(tmp_path):
    store = FeatureStore(tmp_path)
    _fill(store, range(10))
    assert len(list((tmp_path / "features.journal" / "toy-abc").glob("part-*.h5"))) == 4
    _check(store, range(10))
    store.compact()
    assert not (tmp_path / "features.journal").exists()
    _check(store, range(10))
    info = store.info("toy-abc")
    assert (info.n_rows, info.n_failed, info.n_parts) == (10, 0, 0)
    assert not (tmp_path / "features.h5").exists()  # one file per set
    with h5py.File(tmp_path / "features" / "toy-abc.h5", "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        assert SetHeader.from_json(f.attrs["header"]).key == "toy-abc"
        ids = [s.decode() for s in f["ids"][()]]
        assert ids == sorted(ids)


def test_aligned_read_reports_missing_rows(tmp_path):
    store = FeatureStore(tmp_path)
    _fill(store, [1, 3])
    X, present = store.read("toy-abc", "vec", ["c003", "nope", "c001"])
    assert present.tolist() == [True, False, True]
    np.testing.assert_array_equal(X[1], 0)
    np.testing.assert_array_equal(X[0], _values(3)["vec"])


def test_incremental_compaction_equals_single_run(tmp_path):
    a, b = FeatureStore(tmp_path / "a"), FeatureStore(tmp_path / "b")
    _fill(a, range(0, 12))
    a.compact()
    _fill(b, range(6, 12))
    b.compact()
    _fill(b, range(0, 6))
    b.compact()
    for name in ("vec", "pooled"):
        ids = [f"c{i:03d}" for i in range(12)]
        np.testing.assert_array_equal(a.read("toy-abc", name, ids)[0], b.read("toy-abc", name, ids)[0])
    with h5py.File(a.set_path("toy-abc")) as fa, h5py.File(b.set_path("toy-abc")) as fb:
        for name in ("ids", "hashes", "fields/vec", "fields/pooled", "fields/frames/data",
                     "fields/frames/offsets"):
            np.testing.assert_array_equal(fa[name][()], fb[name][()])


def test_newest_record_wins_and_failure_is_cleared(tmp_path):
    store = FeatureStore(tmp_path)
    h = _header()
    with store.writer(h) as w:
        w.fail("c001", "h1", "broken.wav: unreadable")
        w.add("c002", "old", _values(99))
    store.compact()
    done, failed = store.status("toy-abc")
    assert "c001" in failed and failed["c001"][1].startswith("broken.wav")
    with store.writer(h) as w:
        w.add("c001", "h1", _values(1))
        w.add("c002", "h2", _values(2))
    done, failed = store.status("toy-abc")
    assert failed == {} and done == {"c001": "h1", "c002": "h2"}
    _check(store, [1, 2])
    store.compact()
    _check(store, [1, 2])


def test_config_mismatch_is_refused(tmp_path):
    store = FeatureStore(tmp_path)
    _fill(store, range(2))
    other = _header(cfg={"extractor": "toy", "dims": 4, "extra": 1})
    with pytest.raises(ConfigMismatch, match="config.extra"):
        store.writer(other)


@pytest.mark.parametrize("name", ["features.h5", "features/toy-abc.h5"])
def test_other_schema_version_is_refused_and_untouched(tmp_path, name):
    (tmp_path / "features").mkdir()
    with h5py.File(tmp_path / name, "w") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    before = (tmp_path / name).read_bytes()
    store = FeatureStore(tmp_path)
    with pytest.raises(SchemaMismatch, match="schema version"):
        store.writer(_header())
    with pytest.raises(SchemaMismatch, match="schema version"):
        store.compact(drop=["toy-abc"])
    assert (tmp_path / name).read_bytes() == before


def test_shape_check_names_field(tmp_path):
    store = FeatureStore(tmp_path)
    with store.writer(_header()) as w:
        with pytest.raises(ValueError, match="'vec'"):
            w.add("c1", "h", {**_values(1), "vec": np.zeros(5, "f4")})


def test_leftover_temporary_files_are_ignored_and_cleaned(tmp_path):
    store = FeatureStore(tmp_path)
    _fill(store, range(3))
    junk = tmp_path / "features.journal" / "toy-abc" / ".part-1-2-3.h5.tmp"
    junk.write_bytes(b"half written")
    _check(store, range(3))
    assert store.clean_temporary() == 1 and not junk.exists()


def test_lock_refuses_second_writer_and_names_holder(tmp_path):
    with WorkdirLock(tmp_path):
        with pytest.raises(WorkdirBusy, match=r"pid \d+"):
            WorkdirLock(tmp_path).acquire()
    with WorkdirLock(tmp_path):  # released: can be taken again
        pass


def test_find_by_spec_name_or_key(tmp_path):
    store = FeatureStore(tmp_path)
    _fill(store, range(1))
    assert store.find("toy:x").key == "toy-abc"
    assert store.find("toy-abc").key == "toy-abc"
    with pytest.raises(KeyError, match="extract"):
        store.find("opensmile:eGeMAPSv02")


def test_config_mismatch_advice_is_a_command_that_works(tmp_path):
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    store = FeatureStore(tmp_path)
    _fill(store, range(2))
    store.compact()
    other = _header(cfg={"extractor": "toy", "dims": 4, "extra": 1})
    with pytest.raises(ConfigMismatch) as err:
        store.writer(other)
    advice = str(err.value).split("`")[1]
    assert advice.startswith("python run_pipeline.py verify ")  # the whole command
    p = subprocess.run([sys.executable, str(root / "run_pipeline.py"), *shlex.split(advice)[2:]],
                       cwd=root, capture_output=True, text=True)
    assert p.returncode == 0 and "dropped toy-abc (2 rows)" in p.stdout, p.stdout + p.stderr
    assert store.keys() == []
    with store.writer(other) as w:  # now the new configuration can be stored
        w.add("c000", "h0", _values(0))
    assert store.header("toy-abc").config["extra"] == 1


def test_leftover_temporaries_are_listed(tmp_path):
    store = FeatureStore(tmp_path)
    _fill(store, range(2))
    store.compact()
    junk = tmp_path / ".features.h5.deadbeef.tmp"
    junk.write_bytes(b"x" * 10)
    assert store.temporary_files() == [junk]
    from extract.verify import verify_store

    lines = "\n".join(verify_store(store, check_hashes=False).lines())
    assert "1 temporary file(s)" in lines and str(junk) in lines


@pytest.mark.parametrize("where", ["part", "compacted"])
def test_flipped_bytes_in_row_data_fail_verify(tmp_path, where):
    from extract.verify import verify_store

    store = FeatureStore(tmp_path)
    _fill(store, range(6), flush_rows=6)
    if where == "compacted":
        store.compact()
        path, name = store.set_path("toy-abc"), "fields/vec"
    else:
        (path,) = (tmp_path / "features.journal" / "toy-abc").glob("part-*.h5")
        name = "fields/vec"
    with h5py.File(path, "r") as f:
        ds = f[name]
        assert ds.fletcher32
        offset = ds.id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    report = verify_store(store, check_hashes=False)
    (chk,) = report.sets
    assert not report.ok and any("vec" in u for u in chk.unreadable), chk


def test_compaction_blocks_are_bounded_by_bytes_not_rows(tmp_path, monkeypatch):
    """Large rows: each compaction block holds what fits in COMPACT_BLOCK_BYTES (at least one
    row), counted by wrapping the block reader; the values are those written."""
    import extract.store.compaction as st

    budget = 20_000
    monkeypatch.setattr(st, "COMPACT_BLOCK_BYTES", budget)
    blocks: dict[str, list[int]] = {"vec": [], "pooled": [], "frames": []}
    frames_of: dict[str, int] = {}
    real_gather = st.gather

    def counting(view, name, spec, ids):
        blocks[name].append(len(ids))
        if name == "frames":  # bytes of this block of ragged rows, from what it returns
            out = real_gather(view, name, spec, ids)
            assert sum(a.nbytes for a in out) <= budget or len(ids) == 1
            return out
        return real_gather(view, name, spec, ids)

    monkeypatch.setattr(st, "gather", counting)
    dims = 500  # vec: 2,000 B a row; pooled (3, 500) float16: 3,000 B; frames: 2,000 B a frame
    header = _header(dims=dims)
    store = FeatureStore(tmp_path)
    rng_frames = [1 + (i * 7) % 13 for i in range(40)]  # 1..13 frames: 2 kB .. 26 kB a row
    with store.writer(header, flush_rows=7) as w:
        for i in reversed(range(40)):  # rows of a part in reverse id order: scattered reads
            w.add(f"c{i:03d}", f"h{i}", _values(i, dims=dims, frames=rng_frames[i]))
            frames_of[f"c{i:03d}"] = rng_frames[i]
    store.compact()
    assert blocks["vec"] == [10, 10, 10, 10]  # 20,000 // 2,000 rows a block, not 2,048
    assert blocks["pooled"] == [6] * 6 + [4]  # 20,000 // 3,000
    assert sum(blocks["frames"]) == 40 and max(blocks["frames"]) < 10
    assert blocks["frames"].count(1) >= 1  # a 26 kB row over the budget is a block of its own
    ids = [f"c{i:03d}" for i in range(40)]
    X, present = store.read("toy-abc", "vec", ids)
    assert present.all()
    for row, i in zip(X, range(40)):
        np.testing.assert_array_equal(row, _values(i, dims=dims, frames=rng_frames[i])["vec"])
    for cid, i in zip(ids, range(40)):
        got = store.read_sequence("toy-abc", "frames", cid)
        np.testing.assert_array_equal(got, _values(i, dims=dims, frames=rng_frames[i])["frames"])
        assert len(got) == frames_of[cid]


def test_row_blocks_plan():
    from extract.store import row_blocks

    assert row_blocks(np.array([4, 4, 4, 10, 1]), 8) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert row_blocks(np.array([], dtype=np.int64), 8) == []
    assert row_blocks(np.ones(5, dtype=np.int64), 100, max_rows=2) == [(0, 2), (2, 4), (4, 5)]
    sizes = np.random.default_rng(0).integers(1, 50, size=1000)
    plan = row_blocks(sizes, 120)
    assert plan[0][0] == 0 and plan[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:]))
    assert all(sizes[lo:hi].sum() <= 120 for lo, hi in plan)


def test_compaction_memory_is_bounded_by_the_block_bytes_not_the_set(tmp_path, monkeypatch):
    """tracemalloc peak of a compaction of ~24 MB of values with 1 MB blocks stays a few
    blocks; were the set gathered whole, the peak would exceed 24 MB."""
    import tracemalloc

    import extract.store.compaction as st

    budget = 1 << 20
    monkeypatch.setattr(st, "COMPACT_BLOCK_BYTES", budget)
    dims, n = 5000, 300  # vec 20 kB a row; pooled (3, 5000) float16 30 kB; frames 20 kB a frame
    header = _header(dims=dims)
    store = FeatureStore(tmp_path)
    with store.writer(header, flush_rows=64) as w:
        for i in range(n):
            w.add(f"c{i:03d}", f"h{i}", _values(i, dims=dims, frames=1 + i % 3))
    total = sum(a.nbytes for i in range(n) for a in _values(i, dims=dims, frames=1 + i % 3).values())
    assert total > 24 * budget
    tracemalloc.start()
    try:
        store.compact()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * budget, f"compaction peak {peak / 2**20:.1f} MiB for 1 MiB blocks"
    X, present = store.read("toy-abc", "vec", ["c000", "c299"])
    assert present.all()
    np.testing.assert_array_equal(X[1], _values(299, dims=dims, frames=1 + 299 % 3)["vec"])
