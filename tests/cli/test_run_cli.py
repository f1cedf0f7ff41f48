"""``run experiment.toml`` through the real command line: the README's example file, run on a
tiny corpus of one's own from another folder, and the refusals of keys the commands lack."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from data.demo import make_demo_corpus

from clitools import ROOT, cli


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### An experiment file", 1)[1]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding mine/ (a csv corpus with the columns the README names)."""
    root = tmp_path_factory.mktemp("exp")
    mine = make_demo_corpus(root / "mine", n_clips=40, seed=6)
    two = pd.read_csv(mine / "labels" / "two_info.csv")
    kind = pd.read_csv(mine / "labels" / "type_info.csv")
    pd.DataFrame({"file": [f"audio/wav/{i.strip('[]')}.wav" for i in two["File_ID"]],
                  "split": ["train"] * 26 + ["val"] * 14,
                  "emotion": kind["Voc_Type"], "valence": two["Valence"],
                  "arousal": two["Arousal"]}).to_csv(mine / "labels.csv", index=False)
    return root


@pytest.mark.slow
def test_the_readme_example_runs_extract_train_and_report(folder):
    exp = folder / "experiment.toml"
    exp.write_text(_readme_example())
    p = cli("run", str(exp))  # run from the repository: paths still resolve beside the file
    wd = folder / "runs" / "mine"
    assert list((wd / "features").glob("*.h5")) and (wd / "report.md").is_file()
    for run, metric in (("egemaps-logreg", "uar"), ("egemaps-ridge", "ccc")):
        m = json.loads((wd / "runs" / run / "metrics.json").read_text())
        assert m["val"]["metric"] == metric and m["features"][0]["spec"] == "opensmile:eGeMAPSv02"
    steps = [ln for ln in p.stdout.splitlines() if ln.startswith("== python run_pipeline.py ")]
    assert [s.split()[3] for s in steps] == ["extract", "train", "train", "report"]
    assert f"--corpus {folder / 'mine'}" in steps[0] and f"--workdir {wd}" in steps[0]
    assert "40 computed" in p.stdout and "egemaps-logreg" in p.stdout
    # the printed commands are the ones that ran: a printed train command runs as it stands
    args = shlex.split(steps[1][3:])
    r = subprocess.run([sys.executable, *args[1:]], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "Val uar" in r.stdout, r.stderr


@pytest.mark.parametrize("edit, named, valid", [
    (("[extract]\n", '[extract]\npooling = "mean"\n'), "'pooling'", "poolings"),
    (("[[train]]\n", '[[train]]\nheads = "ridge"\n'), "'heads'", "head"),
    (("workdir = ", 'runs = 2\nworkdir = '), "'runs'", "workdir, extract, train, report"),
])
def test_an_unknown_key_is_named_with_the_valid_ones_before_anything_runs(folder, edit, named, valid):
    text = _readme_example().replace('"runs/mine"', '"runs/refused"').replace(*edit, 1)
    exp = folder / "bad.toml"
    exp.write_text(text)
    p = cli("run", str(exp), check=2)
    assert f"unknown key {named}" in p.stderr and "valid keys:" in p.stderr, p.stderr
    assert valid in p.stderr.split("valid keys:", 1)[1]
    assert str(exp) in p.stderr and not (folder / "runs" / "refused").exists()


def test_a_bad_value_names_its_table_and_the_help_to_read(folder):
    exp = folder / "badvalue.toml"
    exp.write_text(_readme_example().replace('"runs/mine"', '"runs/refused"')
                   .replace("workers = 1", 'workers = "two"'))
    p = cli("run", str(exp), check=2)
    assert "[extract]" in p.stderr and "--workers" in p.stderr and "'two'" in p.stderr
    assert "run_pipeline.py extract --help" in p.stderr
    assert not (folder / "runs" / "refused").exists()
    p = cli("run", str(folder / "missing.toml"), check=2)
    assert "does not exist" in p.stderr
