"""The bad-input catalogue, each case through the real command line on generated files.

Every bad clip: a message naming the file, recorded as failed with its reason in the store and
in `verify`; every other clip completes; exit 3 when clips failed, 2 when the run cannot start.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from clitools import cli
SR = 16000




def tone(seconds: float, sr: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (180 + 40 * seed) * t) + 0.02 * rng.standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


# name -> (writer, expected: "ok" or a fragment of the failure reason)
def build_catalogue(root: Path, *, long_clip: bool) -> dict[str, str]:
    a = root / "audio"
    a.mkdir(parents=True)
    expect: dict[str, str] = {}

    def wav(name, x, sr=SR, subtype="PCM_16", fmt=None, ok="ok"):
        sf.write(a / name, x, sr, subtype=subtype, format=fmt)
        expect[name] = ok

    for i in range(6):  # plain good clips, so learning has data
        wav(f"good{i}.wav", tone(1.0, seed=i))
    (a / "empty.wav").write_bytes(b"")
    expect["empty.wav"] = "empty"
    sf.write(a / "full.wav", tone(2.0), SR)
    data = (a / "full.wav").read_bytes()
    (a / "truncated.wav").write_bytes(data[: len(data) // 3])
    expect["truncated.wav"] = "truncated"
    (a / "text.wav").write_text("this is a text file, not audio\n" * 20)
    expect["text.wav"] = "text.wav"
    wav("zero_samples.wav", np.zeros(0))
    expect["zero_samples.wav"] = "0 samples"
    wav("short_10ms.wav", tone(0.010), ok="ms clip")
    wav("silent.wav", np.zeros(SR))
    nan = tone(1.0)
    nan[100:110] = np.nan
    nan[200] = np.inf
    wav("nan.wav", nan, subtype="FLOAT", ok="NaN")
    wav("u8.wav", tone(1.0, seed=2), subtype="PCM_U8")
    wav("pcm24.wav", tone(1.0, seed=3), subtype="PCM_24")
    wav("float32.wav", tone(1.0, seed=4), subtype="FLOAT")
    wav("stereo.wav", tone(1.0, channels=2, seed=5))
    wav("six_ch.wav", tone(1.0, channels=6, seed=6))
    for sr in (8000, 11025, 22050, 44100, 48000):
        wav(f"rate_{sr}.wav", tone(1.0, sr=sr, seed=7), sr=sr)
    wav("flac_clip.flac", tone(1.0, seed=8), subtype="PCM_16", fmt="FLAC")
    wav("ogg_clip.ogg", tone(1.0, seed=9), subtype="VORBIS", fmt="OGG")
    if long_clip:
        wav("ten_minutes.wav", tone(600.0, seed=10))
    expect["missing.wav"] = "no such file"
    return expect


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "corpus"
    expect = build_catalogue(root, long_clip=True)
    rows = [{"file": f"audio/{n}", "split": ["train", "val", "test"][i % 3],
             "score": (i % 5) / 4, "kind": "ab"[i % 2]} for i, n in enumerate(sorted(expect))]
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    wd = root.parent / "wd"
    p = cli("extract", "--corpus", str(root), "--layout", "csv", "--workdir", str(wd),
            "--features", "opensmile:eGeMAPSv02", "--workers", "2", "--no-progress", check=None)
    return root, wd, expect, p


def test_every_bad_clip_is_reported_and_every_good_clip_stored(catalogue):
    root, wd, expect, p = catalogue
    assert p.returncode == 3, p.stdout + p.stderr
    bad = {n: frag for n, frag in expect.items() if frag != "ok"}
    (path,) = (wd / "features").glob("*.h5")  # one file per set
    with h5py.File(path, "r") as f:
        stored = {s.decode() for s in f["ids"][()]}
        failed = dict(zip((s.decode() for s in f["failures/ids"][()]),
                          (s.decode() for s in f["failures/reasons"][()])))
    for name, frag in bad.items():
        cid = f"audio/{name.rsplit('.', 1)[0]}"
        assert cid in failed, f"{name} not recorded as failed: {sorted(failed)}"
        assert frag.lower() in failed[cid].lower(), (name, failed[cid])
        assert name in failed[cid] or frag == "ms clip", failed[cid]  # the reason names the file
        assert name in p.stdout  # listed at the end of the run
    good = {f"audio/{n.rsplit('.', 1)[0]}" for n, frag in expect.items() if frag == "ok"}
    assert good <= stored, good - stored
    v = cli("verify", "--workdir", str(wd), check=3).stdout
    for name in bad:
        assert name.rsplit(".", 1)[0] in v


def test_resampled_and_multichannel_clips_have_features(catalogue):
    root, wd, expect, _ = catalogue
    out = wd / "x.npz"
    cli("export", "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02", "--out", str(out))
    z = np.load(out)
    ids = list(z["ids"])
    for name in ("rate_8000", "rate_48000", "six_ch", "u8", "pcm24", "ten_minutes", "silent"):
        assert f"audio/{name}" in ids
        assert np.isfinite(z["X"][ids.index(f"audio/{name}")]).all()


def test_label_problems_are_reported_not_fatal(tmp_path):
    root = tmp_path / "c"
    (root / "audio").mkdir(parents=True)
    for i in range(8):
        sf.write(root / "audio" / f"a{i}.wav", tone(0.5, seed=i), SR)
    sf.write(root / "audio" / "unlabelled.wav", tone(0.5), SR)
    rows = [{"file": f"audio/a{i}.wav", "split": "train" if i < 5 else "val",
             "score": [0.1, 0.5, 1.7, np.nan, 0.4, 0.2, 0.9, 0.3][i]} for i in range(8)]
    rows.append({"file": "audio/ghost.wav", "split": "train", "score": 0.5})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    wd = tmp_path / "wd"
    p = cli("extract", "--corpus", str(root), "--layout", "csv", "--workdir", str(wd),
            "--features", "opensmile:eGeMAPSv02", "--no-progress", check=None)
    assert p.returncode == 3  # ghost.wav has a label row but no audio: listed as failed
    assert "ghost.wav" in p.stdout
    cli("train", "--workdir", str(wd), "--task", "regress:score", "--features",
            "opensmile:eGeMAPSv02", "--head", "ridge", "--run-name", "r")
    m = json.loads((wd / "runs" / "r" / "metrics.json").read_text())
    assert m["excluded_missing_labels"]["regress:score"]["score"] == 1  # the NaN row, never filled


def test_avb_audio_without_labels_and_labels_without_audio_are_reported(tmp_path):
    from data.demo import make_demo_corpus

    root = make_demo_corpus(tmp_path / "avb", n_clips=16, seed=1)
    wavs = sorted((root / "audio" / "wav").glob("*.wav"))
    sf.write(root / "audio" / "wav" / "77777.wav", tone(0.5), SR)  # audio, no label row
    wavs[0].unlink()  # label rows, no audio
    wd = tmp_path / "wd"
    p = cli("extract", "--corpus", str(root), "--layout", "avb", "--workdir", str(wd),
            "--features", "opensmile:eGeMAPSv02", "--no-progress", check=None)
    assert p.returncode in (0, 3), p.stderr
    assert "77777" in p.stderr and wavs[0].stem in p.stderr + p.stdout
    listing = cli("list", "--workdir", str(wd)).stdout
    assert "16 stored" in listing  # 15 labelled clips with audio + the unlabelled one


def test_duplicate_ids_and_missing_column_are_clear_errors(tmp_path):
    root = tmp_path / "c"
    (root / "audio").mkdir(parents=True)
    sf.write(root / "audio" / "a.wav", tone(0.5), SR)
    pd.DataFrame([{"file": "audio/a.wav", "score": 0.1}, {"file": "audio/a.wav", "score": 0.9}]
                 ).to_csv(root / "labels.csv", index=False)
    p = cli("extract", "--corpus", str(root), "--layout", "csv", "--workdir", str(tmp_path / "w"),
            "--features", "opensmile:eGeMAPSv02", check=2)
    assert "labels.csv" in p.stderr and "audio/a" in p.stderr and "lines [2, 3]" in p.stderr
    pd.DataFrame([{"path": "audio/a.wav", "score": 0.1}]).to_csv(root / "labels.csv", index=False)
    p = cli("extract", "--corpus", str(root), "--layout", "csv", "--workdir", str(tmp_path / "w"),
            "--features", "opensmile:eGeMAPSv02", check=2)
    assert "file" in p.stderr and "path" in p.stderr  # names the column and the columns found


def test_store_refusals(tmp_path):
    root = tmp_path / "c"
    (root / "audio").mkdir(parents=True)
    sf.write(root / "audio" / "a.wav", tone(0.5), SR)
    pd.DataFrame([{"file": "audio/a.wav", "score": 0.1}]).to_csv(root / "labels.csv", index=False)
    wd = tmp_path / "w"
    args = ["extract", "--corpus", str(root), "--layout", "csv", "--workdir", str(wd),
            "--features", "opensmile:eGeMAPSv02", "--no-progress"]
    cli(*args)
    # a feature key whose stored config does not match: refused, nothing overwritten
    (path,) = (wd / "features").glob("*.h5")  # the set's own file
    with h5py.File(path, "a") as f:
        hdr = json.loads(f.attrs["header"])
        hdr["config"]["opensmile"] = "0.0.0-tampered"
        f.attrs["header"] = json.dumps(hdr)
    before = path.read_bytes()
    p = cli(*args, check=2)
    assert "different configuration" in p.stderr and "config.opensmile" in p.stderr
    assert path.read_bytes() == before
    # another schema version: refused, never overwritten
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 999
    before = path.read_bytes()
    p = cli(*args, check=2)
    assert "schema version 999" in p.stderr
    assert path.read_bytes() == before


def test_unknown_model_fails_before_touching_the_store(tmp_path):
    root = tmp_path / "c"
    (root / "audio").mkdir(parents=True)
    sf.write(root / "audio" / "a.wav", tone(0.5), SR)
    pd.DataFrame([{"file": "audio/a.wav"}]).to_csv(root / "labels.csv", index=False)
    wd = tmp_path / "w"
    import os

    env_before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        p = cli("extract", "--corpus", str(root), "--layout", "csv", "--workdir", str(wd),
                "--features", "ssl:no-such-org/no-such-model", check=2)
    finally:
        if env_before is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = env_before
    assert "no-such-org/no-such-model" in p.stderr and "local folder" in p.stderr
    assert not (wd / "features").exists() and not (wd / "features.journal").exists()
    assert not (wd / "features.h5").exists()
