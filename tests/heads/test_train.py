"""Tests for heads/training/: the training loop on synthetic datasets (no store, CPU, seconds)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from data.tasks import get_task
from heads.scoring import score_task
from heads.base import FitOptions, FitResult
from heads.config import ExperimentConfig, TrainOptions
from heads.dataset import Dataset, SequenceDataset
from heads.experiment import run_dir_of
from heads.nets import NETS
from heads.registry import HEADS
from heads.sequences import InMemorySequences, fit_frame_stats, pad_batch
from heads.training import (Labels, load_checkpoint, lr_factor, make_outputs, output_losses,
                            train_class_weights)
from heads.training.losses import ccc_loss, inverse_frequency_weights

TORCH_HEADS = {n: h for n, h in HEADS.items() if h.family == "torch"}


N_TRAIN, N_VAL, N_TEST, D = 96, 48, 16, 12


def _dataset(task_names=("avb-high", "avb-type", "country"), *, seed: int = 0,
             flip_val: bool = False) -> Dataset:
    """Learnable labels from a random linear map; ``flip_val`` makes Val the opposite of Train."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_VAL + N_TEST
    X = rng.normal(size=(n, D)).astype(np.float32)
    split = np.array(["Train"] * N_TRAIN + ["Val"] * N_VAL + ["Test"] * N_TEST)
    tasks = [get_task(t) for t in task_names]
    truths: dict = {}
    for t in tasks:
        truths[t.name] = {}
        for tg in t.targets:
            s = X @ rng.normal(size=(D, tg.num_outputs))
            if flip_val:
                s[N_TRAIN:N_TRAIN + N_VAL] *= -1
            if tg.kind == "classification":
                truths[t.name][tg.name] = s.argmax(axis=1).astype(np.int64)
            elif tg.metric == "mae":
                truths[t.name][tg.name] = (30 + 3 * s[:, :1]).astype(np.float32)
            else:
                truths[t.name][tg.name] = (1 / (1 + np.exp(-s / 2))).astype(np.float32)
            if tg.kind == "regression":
                truths[t.name][tg.name][N_TRAIN + N_VAL:] = np.nan  # Test labels withheld
            else:
                truths[t.name][tg.name][N_TRAIN + N_VAL:] = -1
    return Dataset([f"c{i}" for i in range(n)], split, X, tasks, truths, [])


def _cfg(tmp_path: Path, head: str = "mlp-mtl", run: str = "r", **options) -> ExperimentConfig:
    return ExperimentConfig(workdir=str(tmp_path), task="t", features=("synthetic",), head=head,
                            run_name=run, options={"epochs": 3, "batch_size": 16, **options})


def fit_torch(cfg: ExperimentConfig, ds: Dataset, tasks, seed: int):
    """The registered head of ``cfg.head`` fitted as ``train`` fits it, into ``run_dir_of(cfg)``;
    returns ``(predictions, chosen parameters, excluded)``."""
    result = HEADS[cfg.head].fit(ds, tasks, seed=seed, out_dir=run_dir_of(cfg),
                                 options=FitOptions(head_options=cfg.options, n_jobs=cfg.n_jobs,
                                                    run_config=asdict(cfg)))
    return result.predictions, result.params, result.excluded


def _curves(tmp_path: Path, run: str = "r", tag: str = "seed0") -> dict:
    return json.loads((tmp_path / "runs" / run / f"curves_{tag}.json").read_text())


def test_registry_and_dispatch(tmp_path) -> None:
    assert set(TORCH_HEADS) >= {"mlp-avb", "mlp-mtl", "lstm", "fc128", "lstm128", "netvlad",
                                "autopool", "mean3"}
    assert set(TORCH_HEADS) == set(NETS)
    # one call trains every task: one model, its parameters not keyed by task
    ds = _dataset(("avb-type", "country"))
    result = HEADS["mlp-mtl"].fit(ds, ds.tasks, seed=0, out_dir=run_dir_of(_cfg(tmp_path)),
                                  options=FitOptions(head_options={"epochs": 1}))
    assert isinstance(result, FitResult) and result.per_task is False
    assert set(result.predictions) == {"avb-type", "country"}


def test_options_validate_and_name_valid_keys() -> None:
    with pytest.raises(ValueError, match="unknown training option.*'epoch'.*valid: weighting"):
        TrainOptions.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainOptions.from_dict({"optimizer": "sgd"})
    with pytest.raises(ValueError, match="not a regression loss"):
        TrainOptions.from_dict({"loss": "ccc,age=hinge"})
    assert TrainOptions.from_dict({"chain": "country, type"}).chain == ("country", "type")


def test_fit_returns_predictions_for_every_row_and_files(tmp_path: Path) -> None:
    ds = _dataset(("avb-high", "exvo"))
    preds, info, excluded = fit_torch(_cfg(tmp_path, weighting="uw"), ds, ds.tasks, 0)
    n = len(ds.ids)
    assert preds["avb-high"]["high"].shape == (n, 10)
    assert preds["exvo"]["country"].shape == (n,) and preds["exvo"]["country"].dtype == np.int64
    assert preds["exvo"]["age"].shape == (n, 1)
    # age is predicted in years (its Train range), emotions within [0, 1]
    assert 20 < float(np.median(preds["exvo"]["age"])) < 40
    assert preds["avb-high"]["high"].min() >= 0 and preds["avb-high"]["high"].max() <= 1
    assert excluded == {"avb-high": {"high": 0}, "exvo": {"emotion": 0, "country": 0, "age": 0}}
    assert info["epochs_run"] == 3 and set(info["task_weights"]) == {"high", "emotion", "country", "age"}
    run = tmp_path / "runs" / "r"
    assert (run / "curves_seed0.json").exists() and (run / "model_seed0.pt").exists()


def test_determinism_with_a_fixed_seed(tmp_path: Path) -> None:
    ds = _dataset()
    a, _, _ = fit_torch(_cfg(tmp_path, run="a", weighting="dwa"), ds, ds.tasks, 3)
    b, _, _ = fit_torch(_cfg(tmp_path, run="b", weighting="dwa"), ds, ds.tasks, 3)
    c, _, _ = fit_torch(_cfg(tmp_path, run="c", weighting="dwa"), ds, ds.tasks, 4)
    for task, targets in a.items():
        for target, value in targets.items():
            np.testing.assert_array_equal(value, b[task][target])
    assert _curves(tmp_path, "a", "seed3")["train_loss"] == _curves(tmp_path, "b", "seed3")["train_loss"]
    assert not np.array_equal(a["avb-high"]["high"], c["avb-high"]["high"])


def test_early_stopping_restores_the_best_state(tmp_path: Path) -> None:
    # Val labels are the opposite function of Train's: the better the fit on Train, the worse
    # on Val, so the first epoch is the best and training stops `patience` epochs later.
    ds = _dataset(("avb-high",), flip_val=True)
    cfg = _cfg(tmp_path, epochs=30, patience=3, lr=3e-3, output="linear")
    preds, info, _ = fit_torch(cfg, ds, ds.tasks, 0)
    curves = _curves(tmp_path)
    scores = curves["val_score"]["avb-high"]
    best = int(np.argmax(scores))
    assert info["best_epoch"] == best == curves["best_epoch"]
    assert info["stopped_early"] and info["epochs_run"] == best + 1 + 3 < 30
    assert scores[-1] < scores[best]
    va = ds.rows("Val")
    restored = score_task(ds.tasks[0], {"high": ds.truths["avb-high"]["high"][va]},
                          {"high": preds["avb-high"]["high"][va]})["score"]
    assert restored == pytest.approx(scores[best], abs=1e-5)  # not the last epoch's state
    # the checkpoint holds that state too
    net, ckpt = load_checkpoint(tmp_path / "runs" / "r" / "model_seed0.pt")
    assert ckpt["best_epoch"] == best and ckpt["options"]["patience"] == 3


def test_missing_labels_are_masked_per_column(tmp_path: Path) -> None:
    ds = _dataset(("avb-high", "avb-type"))
    y = ds.truths["avb-high"]["high"]
    y[:40, 2] = np.nan            # one column missing for some clips
    y[40:50, :] = np.nan          # whole rows missing
    ds.truths["avb-type"]["type"][:30] = -1
    opts = TrainOptions()
    outputs = make_outputs(ds.tasks, ds, ds.rows("Train"), opts)
    labels = Labels(outputs, ds, torch.device("cpu"))
    rows = torch.arange(0, 64)
    pred_high = torch.rand(64, 10, requires_grad=True)
    pred = {"high": pred_high, "type": torch.randn(64, 8)}
    weights = train_class_weights(outputs, ds, ds.rows("Train"), torch.device("cpu"), False)
    losses = output_losses(outputs, pred, labels, rows, weights, 0.0)
    # the naive version: per column, only the clips that have that label
    truth = torch.as_tensor(y[:64])
    cols = [ccc_loss(pred_high[ok, j], truth[ok, j]) for j in range(10)
            for ok in [torch.isfinite(truth[:, j])]]
    assert float(losses[0].detach()) == pytest.approx(float(torch.stack(cols).mean().detach()), abs=1e-6)
    keep = torch.as_tensor(ds.truths["avb-type"]["type"][:64]) >= 0
    ce = torch.nn.functional.cross_entropy(pred["type"][keep], torch.as_tensor(
        ds.truths["avb-type"]["type"][:64])[keep])
    assert float(losses[1].detach()) == pytest.approx(float(ce), abs=1e-6)
    losses.sum().backward()
    assert torch.isfinite(pred_high.grad).all()
    # end to end: a fully missing Train column still trains, predictions stay finite
    y[:N_TRAIN, 5] = np.nan
    preds, _, excluded = fit_torch(_cfg(tmp_path), ds, ds.tasks, 0)
    assert np.isfinite(preds["avb-high"]["high"]).all()
    assert excluded["avb-high"]["high"] == 10 and excluded["avb-type"]["type"] == 30


def test_chaining_end_to_end(tmp_path: Path) -> None:
    ds = _dataset(("avb-high", "avb-type", "country"))
    cfg = _cfg(tmp_path, chain="country,type", output="clamp", weighting="uw")
    preds, info, _ = fit_torch(cfg, ds, ds.tasks, 0)
    assert info["options"]["chain"] == ("country", "type")
    net, ckpt = load_checkpoint(tmp_path / "runs" / "r" / "model_seed0.pt")
    assert net.config.chain == ("country", "type")
    # the chained outputs (4 + 8 probabilities) are fed to the high head
    assert net.heads[0].in_features == 256 + 4 + 8 and net.heads[1].in_features == 256
    # the saved net and standardisation reproduce the returned predictions
    st = ckpt["standardisation"]
    x = (ds.X - np.asarray(st["mean"], np.float32)) / np.asarray(st["std"], np.float32)
    with torch.no_grad():
        out = net(torch.as_tensor(x))
    np.testing.assert_array_equal(out["country"].argmax(1).numpy(), preds["country"]["country"])
    with pytest.raises(ValueError, match="chain entry 'age' must name exactly one output"):
        fit_torch(_cfg(tmp_path, chain="age"), ds, ds.tasks, 0)
    with pytest.raises(ValueError, match="chain needs head mlp-mtl"):
        fit_torch(_cfg(tmp_path, head="mlp-avb", chain="country"), ds, ds.tasks, 0)


@pytest.mark.parametrize("weighting", ["uw", "druw"])
def test_learned_weights_are_logged_every_epoch(tmp_path: Path, weighting: str) -> None:
    ds = _dataset()
    _, info, _ = fit_torch(_cfg(tmp_path, weighting=weighting, epochs=4, patience=0), ds, ds.tasks, 0)
    curves = _curves(tmp_path)
    assert curves["epoch"] == [0, 1, 2, 3]
    for name in ("high", "type", "country"):
        w = curves["task_weights"][name]
        assert len(w) == 4 and len(set(w)) > 1  # learned: they move
        assert info["task_weights"][name] == pytest.approx(w[info["best_epoch"]], rel=1e-6)
        assert len(curves["train_loss"][name]) == 4
    assert set(curves["val_score"]) == {"avb-high", "avb-type", "country"}


def test_separate_nets_per_target(tmp_path: Path) -> None:
    ds = _dataset(("exvo",))
    preds, info, _ = fit_torch(_cfg(tmp_path, head="mlp-avb", separate=True,
                                    weighting="fixed:5,0.05,0.05", loss="ccc,age=mse"),
                               ds, ds.tasks, 0)
    assert set(info["separate"]) == {"emotion", "country", "age"}
    for name in ("emotion", "country", "age"):
        assert (tmp_path / "runs" / "r" / f"model_seed0_{name}.pt").exists()
    assert preds["exvo"]["emotion"].shape == (len(ds.ids), 10)


def test_sequence_head_on_frames(tmp_path: Path) -> None:
    ds0 = _dataset(("avb-high", "avb-type"))
    rng = np.random.default_rng(1)
    # frames whose mean over time is the clip's feature vector: the labels are learnable
    arrays = [ds0.X[i] + rng.normal(size=(int(rng.integers(1, 9)), D)) * 0.1 for i in range(len(ds0.ids))]
    seqs = InMemorySequences.from_arrays(arrays)
    ds = SequenceDataset(ds0.ids, ds0.split, np.zeros((len(ds0.ids), 0), np.float32), ds0.tasks,
                         ds0.truths, [], sequences=seqs)
    for head, net in (("lstm", {"hidden": 16}), ("netvlad", {})):
        preds, info, _ = fit_torch(_cfg(tmp_path, head=head, run=head, net=net, epochs=2), ds, ds.tasks, 0)
        assert preds["avb-high"]["high"].shape == (len(ds.ids), 10) and info["epochs_run"] == 2
    mean, std = fit_frame_stats(seqs, ds.rows("Train"))
    x, lengths = pad_batch(seqs, [0, 1], mean, std)
    assert x.shape == (2, int(lengths.max()), D) and (x[lengths.argmin(), lengths.min():] == 0).all()


def test_class_weights_are_normalised_inverse_train_frequency(tmp_path: Path) -> None:
    ds = _dataset(("avb-type",))
    y = ds.truths["avb-type"]["type"]
    tr = ds.rows("Train")
    outputs = make_outputs(ds.tasks, ds, tr, TrainOptions())
    w = train_class_weights(outputs, ds, tr, torch.device("cpu"), True)["type"]
    counts = np.maximum(np.bincount(y[tr], minlength=8), 1)
    expected = (1 / counts) / (1 / counts).sum() * 8
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(w.numpy(), inverse_frequency_weights(counts.tolist()).numpy())


def test_lr_schedule_warmup_then_cosine() -> None:
    f = [lr_factor(s, total_steps=10, warmup_steps=2, schedule="cosine") for s in range(10)]
    assert f[0] == 0.5 and f[1] == 1.0 and f[2] == 1.0
    assert all(a >= b for a, b in zip(f[2:], f[3:])) and f[-1] < 0.05
    assert lr_factor(7, total_steps=10, warmup_steps=2, schedule="none") == 1.0


def test_unscaled_target_trains_in_label_units(tmp_path: Path) -> None:
    """``unscaled = ["age"]``: the MSE of age is taken in years (paper 001), not on [0, 1]."""
    ds = _dataset(("exvo",))
    task = ds.tasks[0]
    train = ds.rows("Train")
    scaled = {o.name: o for o in make_outputs([task], ds, train, TrainOptions.from_dict({}))}
    plain = {o.name: o for o in make_outputs([task], ds, train,
                                             TrainOptions.from_dict({"unscaled": "age"}))}
    age = ds.truths["exvo"]["age"][train]
    assert scaled["age"].lo == (float(np.nanmin(age)),) and scaled["age"].hi == (float(np.nanmax(age)),)
    assert (plain["age"].lo, plain["age"].hi) == ((0.0,), (1.0,))
    assert plain["emotion"] == scaled["emotion"]  # other targets keep their scaling
    preds, _, _ = fit_torch(_cfg(tmp_path, head="mlp-mtl", unscaled=["age"], output="linear",
                                 loss="ccc,age=mse", lr=0.01, epochs=20), ds, ds.tasks, 0)
    assert 20 < float(np.median(preds["exvo"]["age"])) < 40  # years, from a linear output
    with pytest.raises(ValueError, match="unscaled names \\['years'\\]"):
        make_outputs([task], ds, train, TrainOptions.from_dict({"unscaled": "years"}))
    with pytest.raises(ValueError, match="needs output = linear"):
        TrainOptions.from_dict({"unscaled": "age", "output": "sigmoid"})
    with pytest.raises(ValueError, match="add --output linear"):
        fit_torch(_cfg(tmp_path, head="mlp-avb", run="s", unscaled=["age"]), ds, ds.tasks, 0)
