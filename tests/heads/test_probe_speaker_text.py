"""``probe --task speaker`` and ``probe --task text`` on a synthetic store whose speaker
identity sits in one layer and whose spoken content sits in another: each probe finds its
layer, with the same bootstrap CIs as the other probes."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data.workdir import save_corpus_ref
from extract.store import FeatureStore, FieldSpec, SetHeader
from heads.probe import ProbeConfig, WeightedSumConfig, run_probe
from heads.probe.data import within_group_split
from heads.probe.text import clip_edits, run_text_probe
from heads.scoring import Resamples, character_error

SPEC = "ssl:synthetic-ser"
LAYERS, DIM, LETTERS = 4, 8, "abcde"
SPEAKER_LAYER, TEXT_LAYER = 1, 2


@pytest.fixture(scope="module")
def wd(tmp_path_factory):
    """160 clips of 8 speakers; layer 1's pooled vectors and frames carry a speaker offset,
    layer 2's frames spell the transcript (one direction per letter); the rest is noise."""
    wd = tmp_path_factory.mktemp("sertext") / "wd"
    rng = np.random.default_rng(0)
    n = 160
    ids = [f"c{i:04d}" for i in range(n)]
    speakers = [f"s{i % 8}" for i in range(n)]
    offsets = rng.normal(size=(8, DIM)) * 2.0
    letters = np.eye(DIM)[: len(LETTERS)] * 3.0
    fields = {"pooled_mean": FieldSpec((LAYERS, DIM), "float32",
                                       attrs={"layers": list(range(LAYERS)), "pooling": "mean"})}
    for k in range(LAYERS):
        fields[f"frames_l{k}"] = FieldSpec((DIM,), "float32", ragged=True, attrs={"layer": k})
    header = SetHeader(key="ssl-synthetic-ser-000000000001", name="ssl-synthetic-ser", spec=SPEC,
                       config={"extractor": "ssl", "model": "synthetic"},
                       config_hash="000000000001", fields=fields, provenance={})
    texts = []
    store = FeatureStore(wd)
    with store.writer(header) as w:
        for i, cid in enumerate(ids):
            word = "".join(rng.choice(list(LETTERS), size=int(rng.integers(2, 5))))
            texts.append(word)
            spelled = []
            for ch in word:
                spelled += [letters[LETTERS.index(ch)]] * int(rng.integers(2, 4)) + [np.zeros(DIM)]
            t = len(spelled)
            frames = {k: rng.normal(size=(t, DIM)) * 0.5 for k in range(LAYERS)}
            frames[SPEAKER_LAYER] += offsets[int(speakers[i][1:])]
            frames[TEXT_LAYER] += np.asarray(spelled)
            pooled = np.stack([frames[k].mean(axis=0) for k in range(LAYERS)])
            w.add(cid, f"h{i}", {"pooled_mean": pooled.astype(np.float32),
                                 **{f"frames_l{k}": frames[k].astype(np.float32)
                                    for k in range(LAYERS)}})
    store.compact([header.key])
    root = wd / "corpus"
    root.mkdir(parents=True)
    for cid in ids:
        (root / f"{cid}.wav").touch()
    split = np.array(["train"] * 96 + ["val"] * 32 + ["test"] * 32)
    pd.DataFrame({"file": [f"{c}.wav" for c in ids], "split": split, "group": speakers,
                  "words": [t.upper() + "!" for t in texts]}).to_csv(root / "labels.csv", index=False)
    save_corpus_ref(wd, root, "csv", root / "labels.csv", text_column="words", group_column="group")
    return wd


def test_within_group_split_rule():
    split = within_group_split(["a"] * 10 + ["b"] * 3)
    assert split[:10].tolist() == ["Train"] * 3 + ["Val", "Test"] + ["Train"] * 3 + ["Val", "Test"]
    assert split[10:].tolist() == ["Train"] * 3


def test_speaker_probe_finds_the_speaker_layer(wd):
    cfg = ProbeConfig(workdir=str(wd), features=SPEC, task="speaker", seeds=1, n_boot=200,
                      name="spk")
    s = run_probe(cfg).summary
    assert s["best"]["layer"] == SPEAKER_LAYER and "3 : 1 : 1" in s["split_rule"]
    rows = {r["layer"]: r for r in s["results"]}
    assert rows[SPEAKER_LAYER]["score"] > 0.9
    assert all(rows[k]["score"] < 0.5 for k in rows if k != SPEAKER_LAYER)  # chance 1/8
    # each speaker's 20 clips: 12 Train, 4 Val, 4 Test, whatever the corpus's split says
    assert s["n_clips"] == {"Train": 96, "Val": 32, "Test": 32}
    lo, hi = rows[SPEAKER_LAYER]["ci"]
    assert lo <= rows[SPEAKER_LAYER]["score"] <= hi


def test_text_probe_finds_the_content_layer_with_a_bootstrap_ci(wd):
    cfg = ProbeConfig(workdir=str(wd), features=SPEC, task="text", seeds=1, n_boot=200,
                      weighted=WeightedSumConfig(epochs=80), name="txt")
    res = run_text_probe(cfg)
    s = res.summary
    assert s["metric"] == "cer" and s["greater_is_better"] is False
    rows = {r["layer"]: r for r in s["results"]}
    assert s["best"]["layer"] == TEXT_LAYER
    assert rows[TEXT_LAYER]["score"] < 0.3, rows[TEXT_LAYER]
    assert all(rows[k]["score"] > 0.6 for k in rows if k != TEXT_LAYER)
    lo, hi = rows[TEXT_LAYER]["ci"]
    assert lo <= rows[TEXT_LAYER]["score"] <= hi and "test_score" in rows[TEXT_LAYER]
    on_disk = json.loads((res.probe_dir / "probe.json").read_text())
    assert on_disk["vocab"]["size"] == 3 + len(LETTERS)
    assert (res.probe_dir / "vocab.json").is_file() and (res.probe_dir / "probe.csv").is_file()


def test_resampled_cer_is_the_cer_of_the_resampled_clips():
    """A resample's CER from per-clip edits equals jiwer's CER of the clips drawn."""
    refs = ["abc", "de", "abcd", "e"]
    hyps = ["abd", "", "abcd", "ee"]
    edits = clip_edits(refs, hyps)
    lens = np.array([len(r) for r in refs], dtype=float)
    W = next(Resamples(4, 5, 0).chunks())
    for w in W:
        drawn = [i for i in range(4) for _ in range(int(w[i]))]
        want = character_error([refs[i] for i in drawn], [hyps[i] for i in drawn])
        assert np.isclose((w @ edits) / (w @ lens), want)


def test_text_probe_without_frames_gives_the_extract_command(tmp_path):
    from benchmarks.probe import SYNTHETIC_SPEC, make_synthetic_workdir
    from heads.features import FeatureError

    make_synthetic_workdir(tmp_path / "wd", n_clips=20, n_layers=2, dim=4)
    cfg = ProbeConfig(workdir=str(tmp_path / "wd"), features=SYNTHETIC_SPEC, task="text")
    with pytest.raises(FeatureError, match="--frames-layers 0,1"):
        run_text_probe(cfg)


@pytest.mark.slow
def test_probe_command_for_speaker_and_text(wd):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
    from clitools import cli

    p = cli("probe", "--workdir", str(wd), "--features", SPEC, "--task", "speaker",
            "--n-boot", "50", "--name", "cli-spk")
    assert f"best layer: {SPEAKER_LAYER}" in p.stdout and "split: within each speaker" in p.stdout
    p = cli("probe", "--workdir", str(wd), "--features", SPEC, "--task", "text", "--layers",
            f"{TEXT_LAYER},3", "--epochs", "5", "--n-boot", "50", "--name", "cli-txt")
    assert "frames cer" in p.stdout and (wd / "probes" / "cli-txt" / "probe.png").is_file()
    p = cli("probe", "--workdir", str(wd), "--features", SPEC, "--task", "text", "--head",
            "logreg", check=2)
    assert "drop --head" in p.stderr
