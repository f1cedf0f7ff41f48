"""The permutation study with a sequence head (the paper's Conformer heads): every frame a trial's
head reads is the clip's stored frame with the trial's auxiliary vector appended, Val keeps the
true labels by default, and a conformer-mean3 study runs end to end on a tiny store of frames."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.probe import SYNTHETIC_SPEC, make_synthetic_workdir
from extract.base import FieldSpec
from extract.store import FeatureStore, SetHeader
from heads.permutation import PermutationConfig, run_permutation
from heads.sequences import InMemorySequences, SequencesWithClipVectors

N_CLIPS, DIM = 48, 3
FRAMES_KEY = "toy-frames"


def _frames(i: int) -> np.ndarray:
    return np.random.default_rng(100 + i).standard_normal((2 + i % 4, DIM)).astype("f2")


def _frames_workdir(wd, n_clips: int):
    """The synthetic corpus (4 countries, ages related to the labels' latent) plus a set of
    stored layer-12 frames per clip, pure noise."""
    info = make_synthetic_workdir(wd, n_clips=n_clips, n_layers=2, dim=4, poolings=("mean",), seed=2)
    header = SetHeader(key=FRAMES_KEY, name="toy-frames", spec="toy:frames",
                       config={"extractor": "toy"}, config_hash="frames",
                       fields={"num_frames": FieldSpec((), "int64", False, {}),
                               "frames_l12": FieldSpec((DIM,), "float16", True, {"layer": 12})})
    store = FeatureStore(wd)
    with store.writer(header) as w:
        for i, cid in enumerate(info["ids"]):
            w.add(cid, f"h{i}", {"num_frames": np.int64(len(_frames(i))), "frames_l12": _frames(i)})
    store.compact()
    return wd, info["ids"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return _frames_workdir(tmp_path_factory.mktemp("permseq") / "wd", N_CLIPS)


def _true_block(wd, ids: list[str], split: np.ndarray) -> np.ndarray:
    """Country one-hot (countries of Train, sorted) + age standardised on Train, by hand."""
    table = pd.read_csv(wd / "corpus" / "labels.csv")
    table.index = [f.removesuffix(".wav") for f in table["file"]]
    rows = table.loc[ids]
    train = split == "Train"
    countries = sorted(set(rows["Country"][train].dropna()))
    onehot = np.array([[1.0 if c == k else 0.0 for k in countries] for c in rows["Country"]])
    age = rows["Age"].to_numpy(dtype=float)
    z = (age - age[train].mean()) / age[train].std()
    return np.column_stack([onehot, np.where(np.isfinite(z), z, 0.0)])


def test_clip_vectors_are_appended_to_every_frame():
    base = InMemorySequences.from_arrays([_frames(0), _frames(1), np.zeros((0, DIM), "f2")])
    vec = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, 2.25], [0.0, 0.0, 0.0]])
    seqs = SequencesWithClipVectors(base, vec)
    assert seqs.dim == DIM + 3 and len(seqs) == 3
    for r, s in zip([1, 0, 2], seqs.rows([1, 0, 2])):
        raw = base.rows([r])[0]
        assert s.shape == (len(raw), DIM + 3) and s.dtype == np.float32
        for t in range(len(raw)):  # frame by frame: the stored frame, then the clip's vector
            assert s[t].tolist() == raw[t].astype(np.float32).tolist() + vec[r].astype(np.float32).tolist()
    with pytest.raises(ValueError, match="vectors must be"):
        SequencesWithClipVectors(base, vec[:2])


def test_each_trials_sequence_head_reads_frames_with_the_trials_aux_on_every_frame(workdir, monkeypatch):
    """mean3 per trial and condition, seed = base + trial; Train frames carry the condition's
    labels, Val / Test frames the true ones (eval_aux = true, the default)."""
    import heads.permutation as perm
    from heads.registry import HEADS

    wd, _ = workdir
    blocks: list[np.ndarray | None] = []
    real_block = perm.aux_block

    def spy_block(*args):
        block = real_block(*args)
        blocks.append(block)
        return block

    seen: list[tuple[int, object]] = []
    real_fit = HEADS["mean3"].fit

    def spy_fit(ds, tasks, *, seed, out_dir, options):
        seen.append((seed, ds))
        return real_fit(ds, tasks, seed=seed, out_dir=out_dir, options=options)

    monkeypatch.setattr(perm, "aux_block", spy_block)
    monkeypatch.setattr(HEADS["mean3"], "fit", spy_fit)
    res = run_permutation(PermutationConfig(
        workdir=str(wd), features=FRAMES_KEY, task="avb-high", trials=2, seed=4,
        conditions=("none", "true", "shuffled", "wrong"), name="seq", head="mean3",
        head_options={"epochs": 1, "device": "cpu", "frames_field": "frames_l12",
                      "net": {"window_frames": 2, "hidden": []}}))
    assert [s for s, _ in seen] == [4] * 4 + [5] * 4
    conds = ["none", "true", "shuffled", "wrong"] * 2
    store = FeatureStore(wd)
    for (_, ds), cond, block in zip(seen, conds, blocks):
        ids = ds.ids
        raw = store.read_sequences(FRAMES_KEY, "frames_l12", ids)
        got = ds.sequences.rows(range(len(ids)))
        true = _true_block(wd, ids, np.where(ds.split == "Unused", "Train", ds.split))
        if cond == "none":
            assert block is None and ds.sequences.dim == DIM
            for r, s in zip(raw, got):
                np.testing.assert_array_equal(s, r)
            continue
        assert ds.sequences.dim == DIM + true.shape[1] == DIM + 5  # 4 countries + age
        train = ds.split == "Train"
        for i, (r, s) in enumerate(zip(raw, got)):
            np.testing.assert_array_equal(s[:, :DIM], r.astype(np.float32))  # the stored frames
            np.testing.assert_array_equal(s[:, DIM:], np.tile(block[i], (len(r), 1)))  # every frame
            if not train[i] or cond == "true":  # Val / Test (and "true"): the true labels
                np.testing.assert_allclose(s[:, DIM:], np.tile(true[i], (len(r), 1)), atol=1e-6)
        if cond != "true":
            assert not np.allclose(block[train], true[train])  # Train manipulated
    assert not np.array_equal(blocks[2], blocks[6])  # fresh shuffles per trial
    s = res.summary
    assert s["head"] == "mean3" and s["frames_field"] == "frames_l12" and s["pooling"] is None
    assert s["input_dim"] == DIM + 5 and "appended" in s["input"] and "every frame" in s["head_text"]
    assert s["condition_meaning"]["true"].startswith("every frame")
    assert all(len(v) == 2 and np.isfinite(v).all() for v in s["scores"].values())


def test_conformer_recipe_study_runs_end_to_end_and_the_report_names_the_head(workdir, capsys):
    from cli import cmd_permutation
    from reports.studies import head_description, permutation_blocks

    wd, _ = workdir
    parser = argparse.ArgumentParser()
    cmd_permutation.add_parser(parser.add_subparsers())
    rc = cmd_permutation.run(parser.parse_args([
        "permutation", "--workdir", str(wd), "--features", FRAMES_KEY, "--trials", "2",
        "--conditions", "true,shuffled", "--name", "conformer", "--recipe", "conformer-mean3",
        "--epochs", "1"]))
    out = capsys.readouterr().out
    assert rc == 0 and "head mean3" in out and "frames_l12" in out
    saved = json.loads((wd / "permutation" / "conformer" / "permutation.json").read_text())
    assert saved["head"] == "mean3" and saved["recipe"] == "conformer-mean3"
    assert saved["config"]["head_options"]["net"]["window_frames"] == 125
    assert saved["head_text"].startswith("recipe conformer-mean3's mean3 (a torch sequence head)")
    assert saved["tests"][0]["test"].startswith("Student")

    class NoFigures:
        def draw(self, *args, **kwargs):
            return None

    text = json.dumps(permutation_blocks([saved], NoFigures()))
    assert "frames_l12 frames" in text and "a torch sequence head" in text
    # ridge says it is the fast option and not the paper's model, also in a study before head_text
    assert "not the paper's model" in head_description({"head": "ridge"})


def test_ridge_study_says_it_is_the_fast_option(workdir):
    wd, _ = workdir
    s = run_permutation(PermutationConfig(workdir=str(wd), features=SYNTHETIC_SPEC, layer=1,
                                          trials=2, conditions=("true", "wrong"), name="r")).summary
    assert s["head"] == "ridge" and "fast option" in s["head_text"]
    assert "not the paper's model" in s["head_text"] and s["frames_field"] is None
    assert s["input_dim"] == 4 + 5


def test_heads_other_than_the_conformer_heads_are_refused(workdir):
    wd, _ = workdir
    for head in ("resnet18", "lstm"):  # a spectrogram CNN; another paper's sequence head
        with pytest.raises(ValueError, match="on frame sequences .*mean3"):
            run_permutation(PermutationConfig(workdir=str(wd), features=FRAMES_KEY, trials=2,
                                              head=head))


def test_the_study_trains_the_head_of_every_conformer_recipe():
    from heads.permutation import study_heads
    from heads.recipes import list_recipes

    conformer = [r for r in list_recipes() if r.name.startswith("conformer-")]
    assert len(conformer) == 10
    assert {r.head for r in conformer} == set(study_heads()[1])


def test_layer_picks_the_frames_a_conformer_recipe_reads(workdir, capsys):
    """--layer N swaps the recipe's frames_l12 for frames_l<N>; frames not stored: a clear error."""
    from cli import cmd_permutation
    from cli.common import UsageError

    wd, _ = workdir
    parser = argparse.ArgumentParser()
    cmd_permutation.add_parser(parser.add_subparsers())
    with pytest.raises(UsageError, match="frames_l7"):
        cmd_permutation.run(parser.parse_args([
            "permutation", "--workdir", str(wd), "--features", FRAMES_KEY, "--trials", "2",
            "--recipe", "conformer-mean3", "--layer", "7"]))
    assert "frames_field frames_l12 -> frames_l7" in capsys.readouterr().out


def test_true_labels_on_the_frames_help_a_sequence_head_where_they_carry_information(tmp_path):
    """The frames are noise; country and age relate to the labels: with the true labels on
    every frame mean3 scores clearly above its shuffled-label trials."""
    wd, _ = _frames_workdir(tmp_path / "wd", 200)
    s = run_permutation(PermutationConfig(
        workdir=str(wd), features=FRAMES_KEY, trials=2, conditions=("true", "shuffled"),
        name="info", head="mean3",
        head_options={"epochs": 60, "patience": 15, "lr": 3e-3, "batch_size": 32, "device": "cpu",
                      "loss": "ccc", "frames_field": "frames_l12"})).summary
    assert min(s["scores"]["true"]) > max(s["scores"]["shuffled"]) + 0.05
