"""What `train` and `probe` report, through the real command line (issue 14, points 5, 6, 12):
selection on the clipped predictions that are reported, numbers labelled over seeds, Test
printed, deterministic heads refusing seeds, WA / UAR / macro-F1 / per-class recall checked
against scikit-learn and audmetric, the probe's best layer on Test and its star."""
from __future__ import annotations

import json
import re
from pathlib import Path

import audmetric
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.preprocessing import StandardScaler

from benchmarks.probe import make_synthetic_workdir
from data.tasks import COUNTRIES, EMOTIONS
from extract.store import FeatureStore
from heads.classical import RIDGE_ALPHAS

from clitools import cli


@pytest.fixture(scope="module")
def wd(tmp_path_factory) -> dict:
    """A small SSL-like set with labels on Test too; little label noise, so that ridge
    predictions overshoot the emotions' [0, 1] range on some clips."""
    base = tmp_path_factory.mktemp("scoring")
    return make_synthetic_workdir(base / "wd", n_clips=360, n_layers=3, dim=16, latent=4,
                                  test_labels=True, seed=5, noise=0.3, label_noise=0.05)


def _metrics(info: dict, run: str) -> dict:
    return json.loads((Path(info["workdir"]) / "runs" / run / "metrics.json").read_text())


def _labels(info: dict) -> pd.DataFrame:
    labels = pd.read_csv(Path(info["workdir"]) / "corpus" / "labels.csv")
    labels.index = [Path(f).stem for f in labels["file"]]
    return labels


def _train(info: dict, *args: str, check: int | None = 0):
    return cli("train", "--workdir", str(info["workdir"]), "--features", info["key"], *args,
               check=check)


def test_ridge_selects_on_the_clipped_predictions_it_reports(wd):
    p = _train(wd, "--head", "ridge", "--task", "avb-high", "--layer", "2", "--n-boot", "100",
               "--run-name", "clip")
    m = _metrics(wd, "clip")
    task = m["tasks"]["avb-high"]
    chosen = m["selection"]["avb-high"]["seed0"]["high"]
    # the score that chose alpha is the score reported
    assert chosen["val_score_selection"] == pytest.approx(task["val"]["score"], abs=1e-5)
    clip = task["clipping"]["high"]
    assert clip["range"] == [0.0, 1.0] and clip["values"]["Val"] == 10 * task["val"]["n"]
    assert clip["clipped"]["Val"] > 0
    assert (f"high: predictions clipped to the label range [0, 1] (Val {clip['clipped']['Val']} "
            f"of {clip['values']['Val']}") in p.stdout
    # Test labels exist: train prints Test
    assert f"avb-high: Test ccc = {task['test']['score']:.4f} (n=" in p.stdout

    # The same selection by hand: scikit-learn Ridge on Train-standardised features, each
    # alpha scored by audmetric's CCC on its clipped Val predictions.
    labels = _labels(wd)
    ids = list(wd["ids"])
    X, _ = FeatureStore(wd["workdir"]).read(wd["key"], "pooled_mean", ids, index=2)
    X = X.astype(np.float64)
    split = labels.loc[ids, "split"].str.lower().to_numpy()
    Y = labels.loc[ids, list(EMOTIONS)].to_numpy(np.float64)
    tr, va = split == "train", split == "val"
    scaler = StandardScaler().fit(X[tr])
    scores = []
    for alpha in RIDGE_ALPHAS:
        pred = np.clip(Ridge(alpha=alpha).fit(scaler.transform(X[tr]), Y[tr])
                       .predict(scaler.transform(X[va])), 0.0, 1.0)
        scores.append(np.mean([audmetric.concordance_cc(Y[va, j], pred[:, j])
                               for j in range(Y.shape[1])]))
    best = int(np.argmax(scores))
    assert chosen["params"]["alpha"] == pytest.approx(RIDGE_ALPHAS[best])
    assert chosen["val_score_selection"] == pytest.approx(scores[best], abs=1e-4)


@pytest.mark.parametrize("head", ["ridge", "xgb"])  # every deterministic head: the next test
def test_deterministic_heads_refuse_seeds_with_a_hint_that_works(wd, head):
    args = ["--head", head, "--task", "country", "--n-boot", "0"]
    p = _train(wd, *args, "--seeds", "3", check=2)
    err = p.stderr + p.stdout
    assert f"--seeds 3: head '{head}' is deterministic" in err and "run it with --seeds 1" in err
    assert "mlp-avb" in err  # names heads whose seed does change the fit
    if head == "ridge":
        _train(wd, *args, "--seeds", "1", "--run-name", f"det-{head}")


@pytest.mark.parametrize("head", ["ridge", "logreg", "svr", "svc", "xgb"])
def test_every_deterministic_head_is_refused(tmp_path, head):
    from heads.config import ExperimentConfig
    from heads.experiment import check_seeds

    cfg = ExperimentConfig(workdir=str(tmp_path), task="country", features=("x",), head=head,
                           seeds=2)
    with pytest.raises(ValueError, match=f"head '{head}' is deterministic"):
        check_seeds(cfg)
    check_seeds(ExperimentConfig(workdir=str(tmp_path), task="country", features=("x",),
                                 head=head, seeds=1))
    check_seeds(ExperimentConfig(workdir=str(tmp_path), task="country", features=("x",),
                                 head="mlp-avb", seeds=2))


def test_seeds_label_each_number_over_seeds(wd):
    p = _train(wd, "--head", "mlp-avb", "--task", "avb-high", "--seeds", "2", "--epochs", "3",
               "--n-boot", "100", "--run-name", "seeds")
    entry = _metrics(wd, "seeds")["tasks"]["avb-high"]
    for split in ("val", "test"):
        s = entry[split]
        assert len(s["seed_scores"]) == 2 and s["aggregate"] == "mean over 2 seed(s)"
        assert s["score"] == pytest.approx(np.mean(s["seed_scores"]), abs=1e-12)
        assert s["score_std"] == pytest.approx(np.std(s["seed_scores"], ddof=1), abs=1e-12)
        assert set(s["per_column_std"]) == set(s["per_column"]) == set(EMOTIONS)
        assert s["targets_seed"] == entry["predictions_seed"]
    assert entry["val"]["ci_method"].startswith("95 % percentile bootstrap over clips of the "
                                                "seed-mean score")
    # the written Test predictions are those of the seed named, with that seed's score
    seed = entry["predictions_seed"]
    pred = pd.read_csv(Path(wd["workdir"]) / "runs" / "seeds" / "predictions_test_avb-high.csv")
    truth = _labels(wd).loc[pred["File_ID"], list(EMOTIONS)].to_numpy(np.float64)
    ccc = np.mean([audmetric.concordance_cc(truth[:, j], pred[c].to_numpy(np.float64))
                   for j, c in enumerate(EMOTIONS)])
    assert ccc == pytest.approx(entry["test"]["seed_scores"][seed], abs=1e-4)
    v, t = entry["val"], entry["test"]
    assert (f"avb-high: Val ccc = {v['score']:.4f} ± {v['score_std']:.4f} (mean ± std over 2 "
            f"seeds, 95% CI of the seed mean") in p.stdout
    assert (f"avb-high: Test ccc = {t['score']:.4f} ± {t['score_std']:.4f} (mean ± std over 2 "
            f"seeds, n=") in p.stdout
    assert f"predictions written from seed {seed}" in p.stdout


def test_classification_reports_wa_uar_macro_f1_and_per_class_recall(wd):
    p = _train(wd, "--head", "logreg", "--task", "country", "--layer", "2", "--n-boot", "0",
               "--run-name", "cls")
    entry = _metrics(wd, "cls")["tasks"]["country"]
    labels = _labels(wd)
    for split in ("val", "test"):
        got = entry[split]["targets"]["country"]
        pred = pd.read_csv(Path(wd["workdir"]) / "runs" / "cls" / f"predictions_{split}_country.csv")
        y_pred = pred["Country"].to_numpy()
        y_true = labels.loc[pred["File_ID"], "Country"].to_numpy()
        assert got["wa"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
        assert got["uar"] == pytest.approx(recall_score(y_true, y_pred, average="macro"), abs=1e-12)
        assert got["uar"] == pytest.approx(audmetric.unweighted_average_recall(y_true, y_pred),
                                           abs=1e-12)
        assert got["score"] == got["uar"] == entry[split]["score"]
        assert got["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"),
                                                abs=1e-12)
        classes = sorted(set(y_true) | set(y_pred), key=list(COUNTRIES).index)
        per_class = recall_score(y_true, y_pred, average=None, labels=classes, zero_division=0)
        assert list(got["per_class_recall"]) == classes
        assert list(got["per_class_recall"].values()) == pytest.approx(list(per_class), abs=1e-12)
        assert got["support"] == {c: int((y_true == c).sum()) for c in classes}
    val = entry["val"]["targets"]["country"]
    assert (f"country: UAR {val['uar']:.4f}, WA {val['wa']:.4f}, macro-F1 "
            f"{val['macro_f1']:.4f}") in p.stdout
    for c, r in val["per_class_recall"].items():
        assert re.search(rf"^\s+{re.escape(c)}\s+{r:6.4f}\s+{val['support'][c]}$", p.stdout, re.M)


def _best_line(stdout: str, layer: int) -> str:
    return next(line for line in stdout.splitlines() if re.match(rf"^\s*{layer}\s+\d", line))


def test_probe_reports_the_val_best_layer_on_test_and_stars_only_a_separated_one(tmp_path):
    clear = make_synthetic_workdir(tmp_path / "clear", n_clips=360, n_layers=3, dim=16,
                                   test_labels=True, signal_layer=1, seed=2, label_noise=0.05)
    p = cli("probe", "--workdir", str(clear["workdir"]), "--features", clear["key"], "--task",
            "avb-high", "--poolings", "mean", "--seeds", "1", "--n-boot", "200", "--name", "c")
    s = json.loads((Path(clear["workdir"]) / "probes" / "c" / "probe.json").read_text())
    best = s["best"]
    rec = next(r for r in s["results"] if (r["layer"], r["pooling"]) == (1, "mean"))
    assert (best["layer"], best["pooling"]) == (1, "mean") and best["selected_on"] == "Val"
    assert best["test_score"] == rec["test_score"]
    assert f"that layer on Test: ccc = {best['test_score']:.4f}" in p.stdout
    assert best["separated"] and best["ci"][0] > best["next"]["ci"][1]
    assert "*" in _best_line(p.stdout, 1) and "its CI does not overlap" in p.stdout

    # labels that no layer predicts: the best point estimate is not starred
    noise = make_synthetic_workdir(tmp_path / "noise", n_clips=360, n_layers=3, dim=16,
                                   test_labels=True, seed=3, label_noise=60.0)
    p = cli("probe", "--workdir", str(noise["workdir"]), "--features", noise["key"], "--task",
            "avb-high", "--poolings", "mean", "--seeds", "1", "--n-boot", "200", "--name", "n")
    best = json.loads((Path(noise["workdir"]) / "probes" / "n" / "probe.json").read_text())["best"]
    assert not best["separated"] and best["ci"][0] <= best["next"]["ci"][1]
    assert "*" not in p.stdout.split("best layer: ")[0]
    assert "not starred: its CI overlaps" in p.stdout
