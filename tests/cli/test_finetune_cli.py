"""``finetune`` as a user runs it: extract, fine-tune, then list / train / export the new set."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from data.demo import make_demo_corpus
from data.workdir import save_corpus_ref
from tests.extract.conftest import build_tiny_model

from clitools import cli

# Tiny models: intra-op threads only contend on a busy 2-core box (a run took 60 s instead of 9)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FINETUNE = ("--task", "avb-high,avb-type", "--frozen-epochs", "3", "--epochs", "2", "--batch-size",
            "8", "--lr", "1e-3", "--max-seconds", "1", "--device", "cpu", "--workers", "1",
            "--run-name", "r1", "--poolings", "mean", "--no-progress")


@pytest.fixture(scope="module")
def corpus_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ftcli")
    return (make_demo_corpus(root / "corpus", n_clips=40, seed=3),
            build_tiny_model("wav2vec2-group", root / "tiny-w2v2"))


def test_finetune_then_use_the_new_set(tmp_path: Path, corpus_and_model: tuple[Path, Path]) -> None:
    corpus, model = corpus_and_model
    wd = tmp_path / "wd"
    save_corpus_ref(wd, corpus, "avb")  # what `extract --corpus ... --layout avb` records
    p = cli("finetune", "--workdir", str(wd), "--features", f"ssl:{model}", *FINETUNE, env=ENV)
    assert "avb-type: Val uar = " in p.stdout and "stage 1, frozen backbone" in p.stdout
    assert "ssl-tiny-w2v2-ft-r1-" in p.stdout and "40 computed, 0 failed" in p.stdout
    run_dir = wd / "finetuned" / "r1"
    assert (run_dir / "model" / "config.json").is_file() and (run_dir / "heads.pt").is_file()

    sets = {s["key"]: s for s in json.loads(cli("list", "--workdir", str(wd), "--json").stdout)}
    key = next(k for k in sets if k.startswith("ssl-tiny-w2v2-ft-r1-"))
    assert sets[key]["provenance"]["finetuned"]["base_model"] == str(model)
    assert sets[key]["fields"]["pooled_mean"]["shape"] == [4, 32] and "pooled_last" not in sets[key]["fields"]
    assert len(sets) == 1

    cli("train", "--workdir", str(wd), "--task", "avb-type", "--features",
        f"ssl:{run_dir / 'model'}", "--head", "logreg", "--run-name", "t1", env=ENV)
    m = json.loads((wd / "runs" / "t1" / "metrics.json").read_text())
    assert m["val"]["metric"] == "uar" and 0 <= m["val"]["score"] <= 1
    assert key in json.dumps(m["features"])  # results name the set readably
    cli("export", "--workdir", str(wd), "--features", key, "--layer", "3", "--out", str(tmp_path / "x.npz"),
        env=ENV)
    assert np.load(tmp_path / "x.npz")["X"].shape == (40, 32)

    # same name and settings: reused, the extraction finds every row stored
    p = cli("finetune", "--workdir", str(wd), "--features", f"ssl:{model}", *FINETUNE, env=ENV)
    assert "reused" in p.stdout and "40 reused, 0 computed" in p.stdout


def test_finetune_usage_errors(tmp_path: Path, corpus_and_model: tuple[Path, Path]) -> None:
    corpus, model = corpus_and_model
    p = cli("finetune", "--workdir", str(tmp_path), "--features", "opensmile:eGeMAPSv02", "--task",
            "avb-high", check=2)
    assert "--features must be ssl:" in p.stderr
    p = cli("finetune", "--workdir", str(tmp_path), "--features", f"ssl:{model}", "--task",
            "avb-nope", check=2, env=ENV)
    assert "unknown task 'avb-nope'" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("family", ["whisper-trimmed", "w2vbert"])
def test_finetune_trains_the_log_mel_and_fbank_families(tmp_path: Path, corpus_and_model: tuple[Path, Path],
                                                       family: str) -> None:
    """Whisper with --whisper-input trimmed (the flag reaches training and the stored set) and
    w2v-BERT 2.0, a few steps each, through the real CLI."""
    from extract.untrained import make_untrained_w2vbert, make_untrained_whisper

    corpus, _ = corpus_and_model
    model = (make_untrained_whisper(tmp_path / "whisper") if family.startswith("whisper")
             else make_untrained_w2vbert(tmp_path / "w2vbert"))
    wd = tmp_path / "wd"
    save_corpus_ref(wd, corpus, "avb")
    args = list(FINETUNE)
    args[args.index("--frozen-epochs") + 1] = "1"
    extra = ["--whisper-input", "trimmed"] if family.startswith("whisper") else []
    p = cli("finetune", "--workdir", str(wd), "--features", f"ssl:{model}", *args, *extra, env=ENV)
    assert "avb-type: Val uar = " in p.stdout and "40 computed, 0 failed" in p.stdout
    options = json.loads((wd / "finetuned" / "r1" / "config.json").read_text())["options"]
    assert options["whisper_input"] == ("trimmed" if extra else "padded")
    sets = json.loads(cli("list", "--workdir", str(wd), "--json").stdout)
    assert len(sets) == 1 and sets[0]["provenance"]["finetuned"]["base_model"] == str(model)
    if extra:
        assert sets[0]["config"]["input"]["whisper_input"] == "trimmed-to-clip"
