"""Layer probing: ridge for many alphas against scikit-learn, the probe against a hand-made
ridge + CCC, the best layer of a store whose signal sits in one layer, the batched bootstrap
against score_task on resampled rows, the weighted-sum weights."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from benchmarks.probe import SYNTHETIC_SPEC, make_synthetic_workdir
from data.tasks import TASKS, get_task
from data.workdir import open_corpus
from extract.store import FeatureStore
from heads.classical import RIDGE_ALPHAS
from heads.scoring import Resamples, ccc_score, headline_resamples, score_task
from heads.features import FeatureError
from heads.probe import ProbeConfig, WeightedSumConfig, run_probe

SIGNAL_LAYER = 3


@pytest.fixture(scope="module")
def store_wd(tmp_path_factory):
    """6 layers x 16 dims, mean and last pooling; only layer 3 carries the labels' latent."""
    wd = tmp_path_factory.mktemp("probe") / "wd"
    make_synthetic_workdir(wd, n_clips=400, n_layers=6, dim=16, signal_layer=SIGNAL_LAYER,
                           poolings=("mean", "last"), seed=3)
    return wd


@pytest.fixture(scope="module")
def probe(store_wd):
    cfg = ProbeConfig(workdir=str(store_wd), features=SYNTHETIC_SPEC, task="avb-high",
                      poolings=("mean", "last"), seeds=2, n_boot=200, name="t")
    return run_probe(cfg)


@pytest.fixture(scope="module")
def wsum(store_wd):
    cfg = ProbeConfig(workdir=str(store_wd), features=SYNTHETIC_SPEC, task="avb-high",
                      poolings=("mean",), seeds=2, n_boot=100, weighted_sum=True,
                      weighted=WeightedSumConfig(epochs=10), name="w")
    return run_probe(cfg)


# --------------------------------------------------------------------------------------------
def test_best_layer_is_the_signal_layer(probe):
    s = probe.summary
    assert s["best"]["layer"] == SIGNAL_LAYER
    for pooling in ("mean", "last"):
        rows = {r["layer"]: r for r in s["results"] if r["pooling"] == pooling}
        assert set(rows) == set(range(6))
        best = rows[SIGNAL_LAYER]
        assert best["score"] > 0.3 and all(rows[l]["score"] < 0.1 for l in rows if l != SIGNAL_LAYER)
        assert best["ci"][0] <= best["score"] <= best["ci"][1]
        assert best["std"] >= 0 and len(best["seed_scores"]) == 2
        assert np.isclose(best["score"], np.mean(best["seed_scores"]))
    table = pd.read_csv(probe.probe_dir / "probe.csv")
    assert list(table["layer"]) == list(range(6))
    for col in ("mean_score", "mean_ci_low", "mean_ci_high", "mean_std", "last_score"):
        assert col in table.columns
    assert table.loc[table["mean_score"].idxmax(), "layer"] == SIGNAL_LAYER
    on_disk = json.loads((probe.probe_dir / "probe.json").read_text())
    assert on_disk["best"]["layer"] == SIGNAL_LAYER and on_disk["ci_method"]


def test_probe_score_equals_direct_ridge_and_ccc(store_wd, probe):
    """Seed 0 of layer 3 / mean: StandardScaler + sklearn Ridge per alpha, alpha by mean CCC
    on Val, predictions clipped to [0, 1], mean of ccc_score per column."""
    store = FeatureStore(store_wd)
    corpus = open_corpus(store_wd)
    key = store.find(SYNTHETIC_SPEC).key
    done, _ = store.status(key)
    clips = corpus.clips[corpus.clips["split"].isin(["Train", "Val", "Test"])]
    ids = [c for c in clips.index if c in done]
    split = clips.loc[ids, "split"].to_numpy()
    X, _ = store.read(key, "pooled_mean", ids, index=SIGNAL_LAYER)
    cols = list(TASKS["avb-high"].columns)
    y = corpus.labels.loc[ids, cols].to_numpy(float)
    tr, va = split == "Train", split == "Val"
    scaler = StandardScaler().fit(X[tr].astype(np.float32))
    Xs = scaler.transform(X.astype(np.float32)).astype(np.float64)

    def mean_ccc(t, p):
        return np.mean([ccc_score(t[:, j], p[:, j]) for j in range(t.shape[1])])

    sel = [mean_ccc(y[va], Ridge(alpha=a).fit(Xs[tr], y[tr]).predict(Xs[va])) for a in RIDGE_ALPHAS]
    alpha = RIDGE_ALPHAS[int(np.argmax(sel))]
    pred = np.clip(Ridge(alpha=alpha).fit(Xs[tr], y[tr]).predict(Xs[va]), 0, 1)
    expected = mean_ccc(y[va], pred)
    rec = next(r for r in probe.summary["results"]
               if r["layer"] == SIGNAL_LAYER and r["pooling"] == "mean")
    assert rec["alpha"]["high"][0] == alpha
    assert rec["seed_scores"][0] == pytest.approx(expected, abs=2e-5)


@pytest.mark.parametrize("task", ["avb-high", "exvo", "classify:Country"])
def test_probe_seed0_equals_train_ridge(store_wd, task):
    """Seed 0 of a probe is `train --head ridge` on that layer: regression, the ExVo
    harmonic mean (emotion CCC, country UAR with balanced RidgeClassifier, age MAE)."""
    from heads.experiment import ExperimentConfig, run_experiment

    res = run_experiment(ExperimentConfig(workdir=str(store_wd), task=task,
                                          features=(SYNTHETIC_SPEC,), head="ridge", layer=2,
                                          pooling="last", n_boot=10, run_name="cmp"))
    probe = run_probe(ProbeConfig(workdir=str(store_wd), features=SYNTHETIC_SPEC, task=task,
                                  poolings=("last",), layers=(2,), n_boot=10, name="cmp"))
    rec = probe.summary["results"][0]
    assert rec["seed_scores"][0] == pytest.approx(res.metrics["val"]["score"], abs=2e-5)


def test_weighted_sum_weights_sum_to_one(wsum):
    ws = wsum.summary["weighted_sum"]
    assert set(ws) == {"mean"}
    for entry in ws.values():
        assert np.isclose(sum(entry["weights"]), 1.0)
        for w in entry["weights_per_seed"]:
            assert np.isclose(sum(w), 1.0) and min(w) > 0
        assert int(np.argmax(entry["weights"])) == SIGNAL_LAYER
        assert entry["ci"][0] <= entry["score"] <= entry["ci"][1]
    weights = pd.read_csv(wsum.probe_dir / "layer_weights.csv")
    assert np.allclose(weights.groupby("pooling")["weight"].sum(), 1.0)


@pytest.mark.parametrize("task_name", ["avb-high", "exvo", "avb-type"])
def test_batched_bootstrap_equals_score_task_on_resampled_rows(task_name):
    task = get_task(task_name)
    rng = np.random.default_rng(7)
    n = 80
    truths, preds = {}, {}
    for tg in task.targets:
        if tg.kind == "classification":
            k = len(tg.classes)
            t = rng.integers(0, k, n)
            t[rng.random(n) < 0.1] = -1  # missing labels
            truths[tg.name], preds[tg.name] = t, np.where(rng.random(n) < 0.6, t.clip(0), rng.integers(0, k, n))
        else:
            t = rng.random((n, len(tg.columns))) * (40 if tg.metric == "mae" else 1)
            p = t + rng.normal(0, 0.3 if tg.metric == "ccc" else 5, t.shape)
            t[rng.random(t.shape) < 0.05] = np.nan
            truths[tg.name], preds[tg.name] = t, p
    res = Resamples(n, 5, seed=11)
    W = next(res.chunks())
    batched = headline_resamples(task, truths, preds, W)
    for b in range(5):
        idx = np.repeat(np.arange(n), W[b].astype(int))
        direct = score_task(task, {k: v[idx] for k, v in truths.items()},
                            {k: v[idx] for k, v in preds.items()})["score"]
        assert batched[b] == pytest.approx(direct, abs=1e-9)


def test_missing_layer_and_pooling_are_named(store_wd):
    with pytest.raises(FeatureError, match="stored layers"):
        run_probe(ProbeConfig(workdir=str(store_wd), features=SYNTHETIC_SPEC, task="avb-high",
                              layers=(0, 9), name="bad"))
    with pytest.raises(FeatureError, match="stored poolings"):
        run_probe(ProbeConfig(workdir=str(store_wd), features=SYNTHETIC_SPEC, task="avb-high",
                              poolings=("max",), name="bad"))


def test_probe_command_writes_table_and_plot(store_wd, capsys):
    import argparse

    from cli import cmd_probe

    def main(argv):  # this one command, without importing every other command
        parser = argparse.ArgumentParser()
        cmd_probe.add_parser(parser.add_subparsers())
        return cmd_probe.run(parser.parse_args(argv))

    rc = main(["probe", "--workdir", str(store_wd), "--features", SYNTHETIC_SPEC,
               "--task", "avb-high", "--poolings", "mean", "--layers", "2,3,4", "--n-boot", "50",
               "--name", "cli"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "best layer: 3 (mean pooling)" in out
    d = store_wd / "probes" / "cli"
    for f in ("probe.json", "probe.csv", "probe.png"):
        assert (d / f).stat().st_size > 0
    assert list(pd.read_csv(d / "probe.csv")["layer"]) == [2, 3, 4]
