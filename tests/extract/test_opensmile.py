"""openSMILE values in the store equal opensmile.Smile.process_signal on the same signal."""
from __future__ import annotations

import numpy as np
import opensmile
import pytest

from data.audio import load_audio
from data.corpora import read_corpus
from data.demo import make_demo_corpus
from extract.base import ExtractOptions
from extract.run import extract_corpus
from extract.store import FeatureStore


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "corpus"
    make_demo_corpus(root, n_clips=12, seed=3)
    return read_corpus(root, "avb")


@pytest.mark.parametrize("feature_set,dims", [("eGeMAPSv02", 88), ("ComParE_2016", 6373)])
def test_stored_functionals_equal_opensmile(tmp_path, demo, feature_set, dims):
    store = FeatureStore(tmp_path)
    s = extract_corpus(store, demo, f"opensmile:{feature_set}", options=ExtractOptions(workers=1))
    assert s.computed == len(demo) and not s.failed
    header = store.find(f"opensmile:{feature_set}")
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                            feature_level=opensmile.FeatureLevel.Functionals)
    assert header.fields["functionals"].attrs["columns"] == list(smile.feature_names)
    ids = list(demo.clips.index)
    X, present = store.read(header.key, "functionals", ids)
    assert present.all() and X.shape == (len(ids), dims)
    for i, cid in enumerate(ids):
        ref = smile.process_signal(load_audio(demo.clips.loc[cid, "path"]), 16000).to_numpy()[0]
        np.testing.assert_array_equal(X[i], ref.astype(np.float32))


def test_lld_level_stores_sequences(tmp_path, demo):
    store = FeatureStore(tmp_path)
    extract_corpus(store, demo, "opensmile:eGeMAPSv02", options=ExtractOptions(level="lld"))
    header = store.find("opensmile:eGeMAPSv02")
    cid = demo.clips.index[0]
    seq = store.read_sequence(header.key, "lld", cid)
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    ref = smile.process_signal(load_audio(demo.clips.loc[cid, "path"]), 16000).to_numpy()
    np.testing.assert_array_equal(seq, ref.astype(np.float32))


def test_rerun_reuses_and_changed_audio_is_recomputed(tmp_path, demo):
    store = FeatureStore(tmp_path)
    opts = ExtractOptions(workers=1)
    first = extract_corpus(store, demo, "opensmile:eGeMAPSv02", options=opts)
    again = extract_corpus(store, demo, "opensmile:eGeMAPSv02", options=opts)
    assert (again.reused, again.computed) == (len(demo), 0)
    # a different level is a different feature set (new key); the first is kept
    lld = extract_corpus(store, demo, "opensmile:eGeMAPSv02", options=ExtractOptions(level="lld"))
    assert lld.key != first.key and len(store.keys()) == 2
    # change one clip's audio: only it is recomputed
    import soundfile as sf

    cid = demo.clips.index[0]
    path = demo.clips.loc[cid, "path"]
    x, sr = sf.read(path)
    sf.write(path, x[::-1].copy(), sr)
    third = extract_corpus(store, demo, "opensmile:eGeMAPSv02", options=opts)
    assert (third.reused, third.computed) == (len(demo) - 1, 1)


def test_too_short_clip_fails_with_reason_others_stored(tmp_path, demo):
    import soundfile as sf

    from data.corpus import Corpus

    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(160, dtype=np.float32), 16000)  # 10 ms
    clips = demo.clips.copy()
    clips.loc["short"] = [str(short), "Train", ""]
    corpus = Corpus(demo.root, demo.layout, clips, demo.labels, ())
    store = FeatureStore(tmp_path / "wd")
    s = extract_corpus(store, corpus, "opensmile:eGeMAPSv02", options=ExtractOptions())
    assert list(s.failed) == ["short"] and "10 ms" in s.failed["short"]
    assert s.computed == len(demo)
    done, failed = store.status(s.key)
    assert "short" in failed and len(done) == len(demo)
