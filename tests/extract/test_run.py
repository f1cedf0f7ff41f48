"""extract_corpus and interruptions: a clip computed across a stop request is never stored."""
from __future__ import annotations

import numpy as np
import pytest

from data.corpora import read_corpus
from data.demo import make_demo_corpus
from extract import run as run_mod
from extract.base import ExtractOptions
from extract.melspec import LogMelExtractor
from extract.run import extract_corpus, stop_requested
from extract.store import FeatureStore


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "corpus"
    make_demo_corpus(root, n_clips=8, seed=5)
    return read_corpus(root, "avb")


@pytest.mark.parametrize("swallowed", ["error", "wrong_values"])
def test_a_stop_during_a_clip_stores_and_fails_nothing_for_it(tmp_path, demo, monkeypatch,
                                                              swallowed):
    """A signal that lands inside native code (openSMILE's ctypes callback) is swallowed
    there: the clip then fails with an unrelated reason, or comes back with values computed
    across the interruption. Neither may reach the store."""
    real = LogMelExtractor.compute
    calls = []

    def interrupted(self, signal):
        calls.append(1)
        if len(calls) == 3:
            run_mod.request_stop()  # what the command line's signal handler does
            if swallowed == "error":
                raise ValueError("openSMILE gave non-finite values")
            return {k: np.zeros_like(v) for k, v in real(self, signal).items()}
        return real(self, signal)

    monkeypatch.setattr(LogMelExtractor, "compute", interrupted)
    store = FeatureStore(tmp_path / "wd")
    with pytest.raises(KeyboardInterrupt, match="not stored"):
        extract_corpus(store, demo, "logmel:16", options=ExtractOptions(workers=1), flush_rows=1)
    key = next(iter(store.headers()))
    done, failed = store.status(key)
    assert len(done) == 2 and failed == {}

    monkeypatch.setattr(LogMelExtractor, "compute", real)
    again = extract_corpus(store, demo, "logmel:16", options=ExtractOptions(workers=1))
    assert not stop_requested()  # a new run starts with the request cleared
    assert again.reused == 2 and again.computed == len(demo.clips) - 2 and not again.failed
