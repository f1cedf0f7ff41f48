"""Streamed frame sequences (heads.sequences.StoreSequences): one store view per epoch, and the
same batches and values as the per-batch store reads it replaced."""
from __future__ import annotations

import numpy as np
import pytest

from extract.base import FieldSpec
from extract.store import FeatureStore, SetHeader
from heads.sequences import StoreSequences, fit_frame_stats, load_sequences, pad_batch

DIM = 3
N = 41


def _header() -> SetHeader:
    return SetHeader(key="toy-seq", name="toy", spec="toy:seq", config={"extractor": "toy"},
                     config_hash="seq",
                     fields={"num_frames": FieldSpec((), "int64", False, {}),
                             "frames_l1": FieldSpec((DIM,), "float16", True, {"layer": 1})})


def _frames(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((1 + (i * 5) % 9, DIM)).astype("f2")


@pytest.fixture()
def store(tmp_path) -> FeatureStore:
    store = FeatureStore(tmp_path)
    with store.writer(_header(), flush_rows=6) as w:
        for i in range(N):
            if i == 7:
                w.fail(f"c{i:03d}", "h", "unreadable")
                continue
            w.add(f"c{i:03d}", f"h{i}", {"num_frames": np.int64(len(_frames(i))),
                                          "frames_l1": _frames(i)})
    store.compact()
    with store.writer(_header(), flush_rows=6) as w:  # some rows newer, in the journal
        for i in (3, 30):
            w.add(f"c{i:03d}", f"h{i}", {"num_frames": np.int64(2), "frames_l1": _frames(100 + i)})
    return store


def _epochs(n_rows: int, train: np.ndarray, val: np.ndarray, epochs: int, batch: int):
    """The reads of a training run: shuffled Train batches, then Val batches, per epoch."""
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = rng.permutation(train)
        for lo in range(0, len(order), batch):
            yield order[lo:lo + batch]
        for lo in range(0, len(val), batch):
            yield val[lo:lo + batch]


def test_one_view_per_epoch_and_the_values_of_per_batch_reads(store, monkeypatch):
    ids = [f"c{i:03d}" for i in range(N)] + ["absent"]
    made = []
    real = FeatureStore.reader
    monkeypatch.setattr(FeatureStore, "reader", lambda self, key: made.append(key) or real(self, key))
    seqs, present, desc = load_sequences(store, ["toy:seq"], ids, layer=1, max_memory_gb=0.0)
    assert isinstance(seqs, StoreSequences) and desc["field"] == "frames_l1"
    assert present.tolist() == [i != 7 for i in range(N)] + [False]
    made.clear()
    train, val = np.arange(0, 30), np.arange(30, len(ids))
    mean, std = fit_frame_stats(seqs, train)
    epochs, batch = 3, 4
    batches = list(_epochs(len(ids), train, val, epochs, batch))
    views = len(made)
    for b in batches:
        before = len(made)
        got = seqs.rows(b)
        views += len(made) - before  # the views the loader made (not the reference's below)
        # the behaviour it replaces: one store read (one view) per batch
        want = store.read_sequences("toy-seq", "frames_l1", [ids[r] for r in b])
        assert len(got) == len(want)
        for g, w in zip(got, want):
            w = np.zeros((0, DIM), np.float32) if w is None else w.reshape(len(w), DIM)
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)
    assert seqs.views_made == epochs + 1 and views == epochs + 1  # statistics pass + each epoch
    assert views < len(batches) / 5
    # padded batches equal those of in-memory sequences built from the same reads
    x, lengths = pad_batch(seqs, batches[0], mean, std)
    raw = store.read_sequences("toy-seq", "frames_l1", [ids[r] for r in batches[0]])
    for k, (a, n) in enumerate(zip(raw, lengths)):
        if a is None or not len(a):
            assert n == 1 and not x[k].any()
        else:
            assert n == len(a)
            np.testing.assert_allclose(x[k, :n], (a.astype(np.float32) - mean) / std, rtol=1e-6)
    np.testing.assert_array_equal(store.read_sequence("toy-seq", "frames_l1", "c003"), _frames(103))


def test_rows_written_meanwhile_are_read_from_the_next_epoch(store):
    ids = ["c007", "c001"]
    seqs = StoreSequences(store, "toy-seq", "frames_l1", ids, DIM)
    assert [len(s) for s in seqs.rows([0, 1])] == [0, len(_frames(1))]
    with store.writer(_header()) as w:  # c007 recomputed while training runs
        w.add("c007", "h7", {"num_frames": np.int64(len(_frames(7))), "frames_l1": _frames(7)})
    store.compact()
    np.testing.assert_array_equal(seqs.rows([0])[0], _frames(7))  # a new pass: a new view
    seqs.close()


def test_streamed_sequences_pickle_without_their_open_files(store):
    import pickle

    seqs = StoreSequences(store, "toy-seq", "frames_l1", ["c001"], DIM)
    first = seqs.rows([0])[0]
    again = pickle.loads(pickle.dumps(seqs))
    np.testing.assert_array_equal(again.rows([0])[0], first)
