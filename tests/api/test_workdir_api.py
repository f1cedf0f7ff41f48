"""vocal_probe.Workdir on a small hand-written store: what it returns, what it refuses, and
that training progress reaches the callback without changing what logging shows."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from extract.base import ExtractOptions, FieldSpec
from extract.store import FeatureStore, SetHeader
from heads.features import FeatureError
from heads.training import loop as training_loop
from vocal_probe import Workdir, extract_options
from vocal_probe.workdir import _training_progress

RNG = np.random.default_rng(0)


@pytest.fixture()
def wd(tmp_path) -> tuple[Workdir, dict]:
    """A store with one vector set (3 named columns) and one set of frames, for clips a, b, c."""
    vec = SetHeader("vec-0", "vec", "toy:vec", {}, "0",
                    {"functionals": FieldSpec((3,), "float32", False, {"columns": ["x", "y", "z"]})})
    seq = SetHeader("seq-0", "seq", "toy:seq", {}, "0",
                    {"logmel": FieldSpec((2,), "float16", True)})
    values = {c: RNG.normal(size=3).astype(np.float32) for c in "cab"}
    frames = {c: RNG.normal(size=(n, 2)).astype(np.float16) for c, n in zip("abc", (4, 1, 3))}
    store = FeatureStore(tmp_path)
    with store.writer(vec) as w:
        for c, v in values.items():
            w.add(c, f"h{c}", {"functionals": v})
    with store.writer(seq) as w:
        for c, f in frames.items():
            w.add(c, f"h{c}", {"logmel": f})
    return Workdir(tmp_path), {"values": values, "frames": frames}


def test_matrix_arrays_and_frames_are_the_stored_rows(wd):
    w, ref = wd
    X = w.matrix("toy:vec")
    assert list(X.index) == ["a", "b", "c"] and list(X.columns) == ["x", "y", "z"]
    np.testing.assert_array_equal(X.to_numpy(), np.stack([ref["values"][c] for c in "abc"]))
    A, ids = w.arrays("vec-0", ids=["c", "a"])  # the given order
    assert ids == ["c", "a"] and A.dtype == np.float32
    np.testing.assert_array_equal(A, np.stack([ref["values"]["c"], ref["values"]["a"]]))
    F = w.frames("toy:seq")
    assert list(F) == ["a", "b", "c"]
    for c in "abc":
        assert F[c].dtype == np.float16
        np.testing.assert_array_equal(F[c], ref["frames"][c])
    sets = w.sets()
    assert sets.loc["seq-0", "frames"] == ["logmel"] and sets.loc["vec-0", "rows"] == 3


def test_refusals_name_what_to_do(wd, tmp_path):
    w, _ = wd
    with pytest.raises(FeatureError, match="--frames-layers"):
        w.frames("toy:vec")  # no frame sequences in that set
    with pytest.raises(KeyError, match="zz"):
        w.arrays("toy:vec", ids=["a", "zz"])
    with pytest.raises(FeatureError):
        w.matrix("toy:nothing")
    with pytest.raises(FileNotFoundError, match="extract"):
        Workdir(tmp_path / "missing").sets()
    with pytest.raises(ValueError, match="torch heads only"):
        w.train(task="classify:x", features=["toy:vec"], head="logreg", epochs=3)
    with pytest.raises(ValueError, match="seeds"):
        w.train(task="classify:x", features=["toy:vec"], head="logreg", seeds=0)


def test_extract_options_take_the_flags_as_keywords():
    o = extract_options(layers="6,12", poolings="mean,std", frames_layers=12, workers=2)
    assert o == ExtractOptions(layers=(6, 12), poolings=("mean", "std"), frames_layers=(12,),
                               workers=2)
    assert extract_options(layers="all").layers is None
    with pytest.raises(TypeError, match="valid: layers"):
        extract_options(layer=12)
    with pytest.raises(ValueError, match="workers"):
        extract_options(workers=0)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_training_progress_reaches_the_callback_and_logging_is_unchanged():
    logger = training_loop.log
    level_before = logger.level
    keep = _Keep()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(keep)
    root.setLevel(logging.WARNING)
    calls = []
    try:
        with _training_progress(lambda *a: calls.append(a)):
            logger.info("epoch 1/2", extra={"progress": {"key": "net seed0", "done": 1, "total": 2}})
            logger.warning("a warning still shows")
        logger.info("after: not shown, no callback")
    finally:
        root.removeHandler(keep)
        root.setLevel(old_level)
    assert calls == [("net seed0", 1, 2)]
    assert [r.getMessage() for r in keep.records] == ["a warning still shows"]
    assert logger.level == level_before and not logger.filters


@pytest.mark.parametrize("head, keywords, flags", [
    ("logreg", {"seeds": 0}, ["--seeds", "0"]),
    ("logreg", {"epochs": 3}, ["--epochs", "3"]),
    ("logreg", {"adversary": "speaker:1"}, ["--adversary", "speaker:1"]),
    ("mlp-mtl", {"optimizer": "sgd"}, ["--optimizer", "sgd"]),
    ("mlp-mtl", {"features": "toy:nothing"}, []),
])
def test_train_and_the_cli_refuse_alike(wd, capsys, head, keywords, flags):
    """The notebook API and ``train`` run the same checks (heads.experiment.check_config):
    the same bad settings, the same message; the command line exits 2 with it."""
    from cli.main import main

    w, _ = wd
    settings = {"task": "classify:x", "features": "toy:vec", "head": head, **keywords}
    with pytest.raises((ValueError, FeatureError)) as exc:
        w.train(**settings)
    message = str(exc.value)
    argv = ["train", "--workdir", str(w.path), "--task", settings["task"], "--features",
            settings["features"], "--head", head, *flags]
    assert main(argv) == 2
    assert f"error: {message}" in capsys.readouterr().err
