"""The spectrogram CNN heads from the command line: extract log-mel frames, train cnn-exits
with a weighting, run a ResNet recipe, read the run back.

One train command runs as a user runs it (a subprocess); the others call ``cli.main.main`` in
this process, which saves the torch start-up (several seconds each) on a 2-core machine.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.demo import make_demo_corpus

from clitools import cli


@pytest.fixture(scope="module")
def logmel_workdir(tmp_path_factory) -> Path:
    """24 demo clips (A-VB layout: exvo labels included) with logmel:64, logmel:128 and the ResNet
    recipes' logmel:128,norm=minmax."""
    base = tmp_path_factory.mktemp("cnn")
    root = make_demo_corpus(base / "corpus", n_clips=24, seed=3)
    wd = base / "wd"
    from cli.main import main

    assert main(["-q", "extract", "--corpus", str(root), "--layout", "avb", "--workdir", str(wd),
                 "--features", "logmel:64", "logmel:128", "logmel:128,norm=minmax", "--no-progress", "--workers", "1"]) == 0
    return wd


def test_train_multi_exit_cnn_with_druw(logmel_workdir: Path) -> None:
    wd = logmel_workdir
    cli("train", "--workdir", str(wd), "--task", "exvo", "--features", "logmel:64", "--head",
        "cnn-exits", "--weighting", "druw", "--epochs", "2", "--net", "channels=4,8,8,8,8",
        "--net", "evaluate=windows", "--n-boot", "0", "--run-name", "cnn")
    run = wd / "runs" / "cnn"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val"]["metric"] == "exvo" and isinstance(metrics["val"]["score"], float)
    curves = json.loads((run / "curves_seed0.json").read_text())
    assert curves["epoch"] == [0, 1] and set(curves["task_weights"]) == {"emotion", "country", "age"}
    import torch

    ckpt = torch.load(run / "model_seed0.pt", weights_only=False)
    assert ckpt["head"] == "cnn-exits" and ckpt["input_dim"] == 64
    assert ckpt["net_config"]["channels"] == "4,8,8,8,8" and ckpt["weighting_spec"] == "druw"
    from heads.training import load_checkpoint

    net, _ = load_checkpoint(run / "model_seed0.pt")
    assert net.exit_of == {"emotion": 5, "country": 3, "age": 1}
    assert net.config.evaluate == "windows"


def test_resnet_recipe_runs_single_task_nets(logmel_workdir: Path, capsys) -> None:
    from cli.main import main

    wd = logmel_workdir
    assert main(["-q", "train", "--workdir", str(wd), "--recipe", "exvo-resnet18", "--epochs", "1",
                 "--seeds", "1", "--net", "width=4", "--n-boot", "0", "--run-name", "resnet"]) == 0
    assert "0.416" in capsys.readouterr().out  # the published number is shown next to ours
    run = wd / "runs" / "resnet"
    assert sorted(f.name for f in run.glob("model_seed0_*.pt")) == [
        "model_seed0_age.pt", "model_seed0_country.pt", "model_seed0_emotion.pt"]
    config = json.loads((run / "config.json").read_text())
    assert config["head"] == "resnet18" and config["features"] == ["logmel:128,norm=minmax"]


def test_bad_exit_is_a_usage_error(logmel_workdir: Path, capsys) -> None:
    from cli.main import main

    rc = main(["-q", "train", "--workdir", str(logmel_workdir), "--task", "exvo", "--features",
               "logmel:64", "--head", "cnn-exits", "--net", "exits=type=1", "--epochs", "1",
               "--n-boot", "0"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "not an output" in err and "emotion" in err
