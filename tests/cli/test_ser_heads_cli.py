"""``train --adversary`` and ``--ctc`` through the command line on a tiny IEMOCAP-shaped release
(two sessions, four speakers, transcripts), held-out speaker 01F as paper 004."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from clitools import ROOT, cli

sys.path.insert(0, str(ROOT / "tests" / "data"))
from test_iemocap import make_iemocap

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("ser")
    release = make_iemocap(base / "corpus")
    wd = base / "wd"
    cli("extract", "--corpus", str(release), "--layout", "iemocap", "--workdir", str(wd),
        "--features", "opensmile:eGeMAPSv02", "logmel:16", "--workers", "1", "--no-progress")
    return wd


def test_adversary_on_an_mlp_and_ctc_on_a_sequence_head(workdir: Path):
    p = cli("train", "--workdir", str(workdir), "--task", "iemocap4", "--features",
            "opensmile:eGeMAPSv02", "--head", "mlp-mtl", "--test-group", "01F", "--epochs", "3",
            "--adversary", "speaker:1", "--run-name", "grl", "--device", "cpu")
    assert "adversary speaker (beta 1, reverse)" in p.stdout
    m = json.loads((workdir / "runs" / "grl" / "speaker_01F" / "metrics.json").read_text())
    adv, probe = m["aux"]["adversary"], m["aux"]["speaker_probe"]
    # Train: 02F and 02M (Val is 01F's partner 01M): the classes are the Train speakers
    st = adv["settings"]
    assert st["classes"] == ["02F", "02M"] and st["beta"] == 1.0 and st["mode"] == "reverse"
    assert adv["train"]["n"] == 6
    assert adv["val"]["speaker_accuracy"] is None  # 01M is no Train speaker
    assert adv["test"]["n"] == 0
    assert "measures" in adv and "measures" in probe and probe["train"]["n"] == 2
    assert "speaker information left: a fresh linear probe" in p.stdout

    cli("train", "--workdir", str(workdir), "--task", "iemocap4", "--features", "logmel:16",
        "--head", "lstm128", "--test-group", "01F", "--epochs", "2", "--ctc", "0.1",
        "--adversary", "speaker:0.1", "--adversary-mode", "forward", "--run-name", "mtl",
        "--device", "cpu")
    fold = workdir / "runs" / "mtl" / "speaker_01F"
    m = json.loads((fold / "metrics.json").read_text())
    ctc = m["aux"]["ctc"]
    assert ctc["settings"]["alpha"] == 0.1 and m["aux"]["adversary"]["settings"]["mode"] == "forward"
    # Test: 01F's two transcribed utterances with a label-bearing or not, every clip of the split
    assert ctc["test"]["n"] >= 2 and ctc["test"]["cer_error"] >= 0
    vocab = json.loads((fold / "vocab.json").read_text())
    assert vocab["symbols"][:3] == ["<blank>", "<unk>", "|"]
    # the vocabulary holds only Train characters (02F, 02M: "that's great", "okay", ...)
    assert "'" in vocab["symbols"] and "x" not in vocab["symbols"]
    text = pd.read_csv(fold / "predictions_test_text.csv", keep_default_na=False)
    assert set(text.columns) == {"File_ID", "reference", "hypothesis"}
    assert "Excuse me." in set(text["reference"])
    # cv.json: the auxiliary heads over folds (one fold here), as finetune's
    grl_aux = json.loads((workdir / "runs" / "grl" / "speaker_01F" / "metrics.json").read_text()
                         )["aux"]
    train_acc = grl_aux["adversary"]["train"]["speaker_accuracy"]
    probe_acc = grl_aux["speaker_probe"]["train"]["speaker_accuracy"]
    grl_cv = json.loads((workdir / "runs" / "grl" / "cv.json").read_text())
    assert grl_cv["aux"]["adversary"]["train"]["speaker_accuracy"]["folds"] == [train_acc]
    assert grl_cv["aux"]["speaker_probe"]["train"]["speaker_accuracy"]["folds"] == [probe_acc]
    assert "val" not in grl_cv["aux"]["adversary"]  # 01M is no Train speaker
    mtl_cv = json.loads((workdir / "runs" / "mtl" / "cv.json").read_text())
    assert mtl_cv["aux"]["ctc"]["test"]["cer_error"]["folds"] == [ctc["test"]["cer_error"]]
    assert "ctc,test,cer_error," in (workdir / "runs" / "mtl" / "cv.csv").read_text()
    # the report shows them in each study's table
    cli("report", "--workdir", str(workdir))
    md = (workdir / "report.md").read_text()
    section = md[md.index("## Cross-validation"):]
    grl = section[section.index("### grl"):section.index("### mtl")]
    row = next(line for line in grl.splitlines() if "| adversary speaker accuracy |" in line)
    assert row.startswith("| Train |") and row.rstrip().endswith(f"| {train_acc:.4f} |")
    row = next(line for line in grl.splitlines() if "| speaker probe speaker accuracy |" in line)
    assert row.startswith("| Train |") and row.rstrip().endswith(f"| {probe_acc:.4f} |")
    mtl = section[section.index("### mtl"):]
    row = next(line for line in mtl.splitlines() if line.startswith("| Test | ctc cer error |"))
    assert row.rstrip().endswith(f"| {ctc['test']['cer_error']:.4f} |")


def test_refusals_name_the_reason(workdir: Path):
    p = cli("train", "--workdir", str(workdir), "--task", "iemocap4", "--features",
            "opensmile:eGeMAPSv02", "--head", "ridge", "--test-group", "01F", "--adversary",
            "speaker:1", check=2)
    assert "head 'ridge' is classical" in p.stderr and "mlp-mtl" in p.stderr
    p = cli("train", "--workdir", str(workdir), "--task", "iemocap4", "--features",
            "opensmile:eGeMAPSv02", "--head", "mlp-mtl", "--test-group", "01F", "--ctc", "0.1",
            check=2)
    assert "no per-frame representation" in p.stderr and "lstm128" in p.stderr
