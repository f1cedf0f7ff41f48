"""One compacted file per set: each operation touches only its set's files; a single-file store
written by the old code (tests/extract/legacy_store/, made by its make.py at a79f7eb) is read as
it is and moved into per-set files by the next compaction, which a kill or a full disk can
interrupt without losing a row."""
from __future__ import annotations

import errno
import importlib.util
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from extract.base import FieldSpec
from extract.store import FeatureStore, SetHeader

HERE = Path(__file__).resolve().parent
LEGACY = HERE / "legacy_store"
_spec = importlib.util.spec_from_file_location("legacy_make", LEGACY / "make.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)


def _legacy(tmp_path: Path, which: str) -> FeatureStore:
    wd = tmp_path / which
    shutil.copytree(LEGACY / which, wd)
    return FeatureStore(wd)


def _stamp(wd: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(wd)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(wd.rglob("*")) if p.is_file()}


def _expected(pending: bool) -> dict[str, dict]:
    """What each clip of toy-abc holds in the fixture: hash and values (None: a failure)."""
    out = {f"c{i:03d}": (f"h{i}", make.values(i)) for i in range(10)}
    out["c010"] = ("h10", None)
    if pending:
        out["c011"] = ("h11", make.values(11))
        out["c001"] = ("h1-new", make.values(101))
        out["c010"] = ("h10", make.values(10))
    return out


def _check_values(store: FeatureStore, pending: bool) -> None:
    want = _expected(pending)
    done, failed = store.status("toy-abc")
    assert done == {c: h for c, (h, v) in want.items() if v is not None}
    assert set(failed) == {c for c, (h, v) in want.items() if v is None}
    ids = sorted(done)
    X, present = store.read("toy-abc", "vec", ids)
    L, _ = store.read("toy-abc", "pooled", ids, index=2)
    assert present.all()
    for cid, x, layer in zip(ids, X, L):
        np.testing.assert_array_equal(x, want[cid][1]["vec"])
        np.testing.assert_array_equal(layer, want[cid][1]["pooled"][2])
        np.testing.assert_array_equal(store.read_sequence("toy-abc", "frames", cid),
                                      want[cid][1]["frames"])
    assert store.notes("toy-abc") == {"c002": ["shorter than the receptive field"]}
    S, ok = store.read("small-def", "functionals", ["c000", "c001", "c002"])
    assert ok.all()
    np.testing.assert_array_equal(S, np.repeat(np.arange(3, dtype="f4")[:, None], 2, axis=1))


def _datasets(path: Path, group: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r", locking=False) as f:
        g = f[group] if group else f
        g.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize("which", ["compacted", "pending"])
def test_a_single_file_store_reads_as_it_is_and_reading_writes_nothing(tmp_path, which):
    store = _legacy(tmp_path, which)
    before = _stamp(store.workdir)
    assert store.keys() == ["small-def", "toy-abc"] and store.set_files() == {}
    assert store.header("toy-abc").provenance == {"made_by": "a79f7eb"}
    _check_values(store, pending=which == "pending")
    assert [i.n_rows for i in store.sets()] == [3, 10 + 2 * (which == "pending")]
    assert _stamp(store.workdir) == before


def test_a_no_op_compaction_of_a_single_file_store_touches_nothing(tmp_path):
    store = _legacy(tmp_path, "compacted")
    before = _stamp(store.workdir)
    assert store.compact() == []
    assert _stamp(store.workdir) == before and not store.sets_dir.exists()


@pytest.mark.parametrize("which", ["compacted", "pending"])
def test_migration_gives_every_set_its_file_equal_to_a_fresh_store(tmp_path, which):
    pending = which == "pending"
    store = _legacy(tmp_path, which)
    # compacted: the first compaction with work is a new set; pending: the journal's rows
    if not pending:
        extra = SetHeader("extra-123", "extra", "extra:z", {"extractor": "extra"}, "123",
                          {"v": FieldSpec((1,), "float32", False, {})})
        with store.writer(extra) as w:
            w.add("c000", "e0", {"v": np.ones(1, "f4")})
    store.compact()
    assert not store.path.exists() and not store.journal.exists()
    assert sorted(store.set_files()) == sorted(["small-def", "toy-abc"] + ([] if pending else ["extra-123"]))
    _check_values(store, pending)
    fresh = FeatureStore(tmp_path / "fresh")  # the same writes through today's code
    make.write(fresh.workdir, pending=pending)
    fresh.compact()
    for key in ("toy-abc", "small-def"):
        got, want = _datasets(store.set_path(key)), _datasets(fresh.set_path(key))
        assert sorted(got) == sorted(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{key}/{name}")
        header = store.header(key)
        with h5py.File(store.set_path(key), "r", locking=False) as f:
            assert SetHeader.from_json(f.attrs["header"]) == header
            assert f["fields/vec" if key == "toy-abc" else "fields/functionals"].fletcher32


def test_the_single_file_store_keeps_its_records_value_for_value_in_the_set_files(tmp_path):
    """Migration copies what the old code wrote: every data set of /sets/<key>/ is in
    features/<key>.h5 with the same values."""
    store = _legacy(tmp_path, "compacted")
    old = {k: _datasets(store.path, f"sets/{k}") for k in store.keys()}  # noqa: SIM118
    store.compact(drop=[])  # nothing to do: stays a single file
    assert store.path.exists()
    with store.writer(store.header("small-def")) as w:  # one new row of one set
        w.add("c009", "s9", {"functionals": np.full(2, 9, "f4")})
    assert store.compact() == ["small-def"]
    got = _datasets(store.set_path("toy-abc"))
    assert sorted(got) == sorted(old["toy-abc"])
    for name, a in old["toy-abc"].items():
        np.testing.assert_array_equal(got[name], a)


@pytest.mark.parametrize("how", ["kill", "disk full"])
def test_a_migration_cut_short_loses_nothing_and_the_next_compaction_finishes_it(
        tmp_path, monkeypatch, how):
    import extract.store.feature_store as fs

    store = _legacy(tmp_path, "pending")
    real = fs.write_set
    calls = []

    def cut(g, header, view):
        calls.append(header.key)
        if len(calls) == 2:  # the journal's set is compacted; the next set's copy is cut
            if how == "kill":
                raise KeyboardInterrupt("killed")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(g, header, view)

    monkeypatch.setattr(fs, "write_set", cut)
    with pytest.raises(KeyboardInterrupt if how == "kill" else OSError):
        store.compact()
    monkeypatch.setattr(fs, "write_set", real)
    assert calls == ["toy-abc", "small-def"]
    assert store.path.exists() and sorted(store.set_files()) == ["toy-abc"]
    assert not store.temporary_files()  # the cut write left nothing behind
    again = FeatureStore(store.workdir)
    _check_values(again, pending=True)  # toy-abc from its file, small-def from features.h5
    assert again.compact() == []  # nothing in the journal, but the migration is finished
    assert not again.path.exists() and sorted(again.set_files()) == ["small-def", "toy-abc"]
    _check_values(again, pending=True)


def test_an_older_version_writing_features_h5_beside_the_set_files_loses_nothing(tmp_path):
    """beside/: the old code (a79f7eb) ran on a workdir already moved to set files and wrote a
    new features.h5 (a new clip c012, c000 again, a failure over c003's stored row of the same
    audio, a new set late-ghi). Readers see both; the next compaction folds them, once."""
    store = _legacy(tmp_path, "beside")
    assert store.path.exists() and sorted(store.set_files()) == ["small-def", "toy-abc"]
    want = _expected(pending=True)
    want["c012"] = ("h12", make.values(12))

    def check(s: FeatureStore) -> None:
        done, failed = s.status("toy-abc")
        assert done == {c: h for c, (h, _) in want.items()} and failed == {}
        ids = sorted(done)
        X, present = s.read("toy-abc", "vec", ids)
        assert present.all()
        for cid, x in zip(ids, X):
            np.testing.assert_array_equal(x, want[cid][1]["vec"])
        np.testing.assert_array_equal(s.read_sequence("toy-abc", "frames", "c012"),
                                      make.values(12)["frames"])
        L, ok = s.read("late-ghi", "functionals", ["c000", "c001"])
        assert ok.all() and L.tolist() == [[0, 0, 0], [1, 1, 1]]

    assert store.keys() == ["late-ghi", "small-def", "toy-abc"]
    check(store)
    small = _stamp(store.workdir)["features/small-def.h5"]
    assert store.compact() == []  # no journal: the single file alone is folded
    assert not store.path.exists()
    assert sorted(store.set_files()) == ["late-ghi", "small-def", "toy-abc"]
    assert _stamp(store.workdir)["features/small-def.h5"] == small  # it held nothing new
    check(FeatureStore(store.workdir))
    before = _stamp(store.workdir)
    assert store.compact() == [] and _stamp(store.workdir) == before


def test_a_failure_never_replaces_a_stored_row_of_the_same_audio(tmp_path):
    """Within a set a newer record wins, except a failure over a row with the same content
    hash; a failure for changed audio still replaces the row of the old audio."""
    store = FeatureStore(tmp_path)
    h = make.small_header()
    with store.writer(h) as w:
        w.add("c000", "s0", {"functionals": np.zeros(2, "f4")})
        w.add("c001", "s1", {"functionals": np.ones(2, "f4")})
    with store.writer(h) as w:
        w.fail("c000", "s0", "c000.wav: file not found")
        w.fail("c001", "s1-changed", "c001.wav: too short")
    for _ in range(2):  # in the journal, then compacted
        done, failed = store.status("small-def")
        assert done == {"c000": "s0"} and set(failed) == {"c001"}
        store.compact()


def test_compacting_one_set_leaves_every_other_set_file_alone(tmp_path):
    store = FeatureStore(tmp_path)
    make.write(tmp_path, pending=False)
    other = store.set_path("toy-abc").stat()
    with store.writer(make.small_header()) as w:
        w.add("c005", "s5", {"functionals": np.full(2, 5, "f4")})
    assert store.compact() == ["small-def"]
    now = store.set_path("toy-abc").stat()
    assert (now.st_ino, now.st_mtime_ns) == (other.st_ino, other.st_mtime_ns)
    S, ok = store.read("small-def", "functionals", ["c000", "c005"])
    assert ok.all() and S[1].tolist() == [5, 5]


def test_drop_removes_one_set_from_either_layout(tmp_path):
    legacy = _legacy(tmp_path, "pending")
    legacy.compact(drop=["small-def"])
    assert legacy.keys() == ["toy-abc"] and not legacy.path.exists()
    assert "small-def" not in legacy.catalog()
    want = _expected(True)
    X, ok = legacy.read("toy-abc", "vec", ["c001", "c011"])
    assert ok.all()
    np.testing.assert_array_equal(X[0], want["c001"][1]["vec"])
    new = FeatureStore(tmp_path / "new")
    make.write(new.workdir, pending=False)
    kept = new.set_path("small-def").stat().st_ino
    new.compact(drop=["toy-abc"])
    assert new.keys() == ["small-def"] and not new.set_path("toy-abc").exists()
    assert new.set_path("small-def").stat().st_ino == kept


def test_a_reader_during_migration_sees_every_row(tmp_path, monkeypatch):
    """A view made while the migration runs (one set's file written, parts deleted, the other
    set still only in features.h5) reads every row."""
    import extract.store.feature_store as fs

    store = _legacy(tmp_path, "pending")
    seen = []
    real = fs.write_set

    def write_and_look(g, header, view):
        real(g, header, view)
        seen.append(sorted(FeatureStore(store.workdir).status("toy-abc")[0]))
    monkeypatch.setattr(fs, "write_set", write_and_look)
    store.compact()
    assert seen == [sorted(c for c, (h, v) in _expected(True).items() if v is not None)] * 2
