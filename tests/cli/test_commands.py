"""The command line as a user runs it: a csv corpus through extract, list, train, export,
verify and report; exit codes; failed clips listed; refusal messages."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.corpora import read_corpus
from data.demo import make_demo_corpus

from clitools import cli




@pytest.fixture(scope="module")
def csv_corpus(tmp_path_factory) -> Path:
    """The demo corpus re-expressed in the csv layout, plus one broken file."""
    base = tmp_path_factory.mktemp("csvc")
    avb = make_demo_corpus(base / "avb", n_clips=48, seed=11)
    c = read_corpus(avb, "avb")
    rows = []
    for cid, r in c.clips.iterrows():
        rel = Path(r["path"]).relative_to(avb)
        rows.append({"file": str(rel), "split": r["split"].lower(), "group": r["group"],
                     "type": c.labels.loc[cid, "Voc_Type"], "awe": c.labels.loc[cid, "Awe"]})
    (avb / "audio" / "wav" / "broken.wav").write_text("this is not audio")
    rows.append({"file": "audio/wav/broken.wav", "split": "train", "group": "x", "type": "Gasp", "awe": 0.5})
    pd.DataFrame(rows).to_csv(avb / "labels.csv", index=False)
    return avb


def test_csv_corpus_end_to_end(tmp_path, csv_corpus):
    wd = tmp_path / "wd"
    p = cli("extract", "--corpus", str(csv_corpus), "--layout", "csv", "--labels",
            str(csv_corpus / "labels.csv"), "--workdir", str(wd), "--features",
            "opensmile:eGeMAPSv02", "--no-progress", check=3)
    assert "1 clip(s) failed" in p.stdout and "broken.wav" in p.stdout
    # rerun: nothing recomputed except the broken clip (still failing: exit 3 again)
    p = cli("extract", "--corpus", str(csv_corpus), "--layout", "csv", "--labels",
            str(csv_corpus / "labels.csv"), "--workdir", str(wd), "--features",
            "opensmile:eGeMAPSv02", "--no-progress", check=3)
    assert "48 reused, 0 computed, 1 failed" in p.stdout
    listing = cli("list", "--workdir", str(wd)).stdout
    assert "opensmile-eGeMAPSv02-functionals-" in listing and "48 stored, 1 failed" in listing
    assert "opensmile" in listing and "last run" in listing
    info = json.loads(cli("list", "--workdir", str(wd), "--json").stdout)
    assert info[0]["fields"]["functionals"]["shape"] == [88]
    cli("train", "--workdir", str(wd), "--task", "classify:type", "--features",
        "opensmile:eGeMAPSv02", "--head", "logreg", "--run-name", "t1")
    m = json.loads((wd / "runs" / "t1" / "metrics.json").read_text())
    assert m["val"]["metric"] == "uar" and 0 <= m["val"]["score"] <= 1
    assert (wd / "runs" / "t1" / "config.json").exists()
    cli("train", "--workdir", str(wd), "--task", "regress:awe", "--features",
        "opensmile:eGeMAPSv02", "--head", "ridge", "--run-name", "t2")
    m = json.loads((wd / "runs" / "t2" / "metrics.json").read_text())
    assert m["val"]["metric"] == "ccc" and "awe" in m["val"]["per_column"]
    for suffix in ("npz", "csv", "parquet"):
        out = tmp_path / f"x.{suffix}"
        cli("export", "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02", "--out", str(out))
    z = np.load(tmp_path / "x.npz")
    assert z["X"].shape == (48, 88) and len(z["ids"]) == 48
    assert pd.read_parquet(tmp_path / "x.parquet").shape == (48, 89)
    v = cli("verify", "--workdir", str(wd), check=3)
    assert "broken.wav" in v.stdout and "1 failed" in v.stdout
    cli("report", "--workdir", str(wd))
    md = (wd / "report.md").read_text()
    assert "classify:type" in md and "failed" in md


def test_usage_errors_exit_2_with_message(tmp_path, csv_corpus):
    p = cli("extract", "--corpus", str(tmp_path / "nope"), "--layout", "csv", "--workdir",
            str(tmp_path / "w"), "--features", "opensmile:eGeMAPSv02", check=2)
    assert "not a folder" in p.stderr
    p = cli("extract", "--corpus", str(csv_corpus), "--layout", "csv", "--workdir",
            str(tmp_path / "w"), "--features", "opensmile:NoSuchSet", check=2)
    assert "unknown openSMILE feature set" in p.stderr and "eGeMAPSv02" in p.stderr
    assert not (tmp_path / "w" / "features.h5").exists() and not (tmp_path / "w" / "features").exists()
    p = cli("train", "--workdir", str(tmp_path / "w"), "--task", "avb-high", "--features",
            "opensmile:eGeMAPSv02", "--head", "ridge", check=2)
    assert "extract" in p.stderr


def test_every_command_has_help():
    from cli.main import COMMANDS

    for name in COMMANDS:
        p = cli(name, "--help")
        assert "usage:" in p.stdout and "--" in p.stdout
