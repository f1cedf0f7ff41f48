"""The head-only recipes of paper 004 (``recipes/ser-mtl*-frozen.toml``): their settings are the
paper's alpha, beta and mode, every fidelity quote is the paper's own words, and each runs one
epoch on a tiny IEMOCAP-shaped release (held-out speaker 01F, log-mel frames standing in for
wav2vec2's)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from heads.recipes import RECIPES_DIR, load_recipe

ROOT = Path(__file__).resolve().parents[2]
FROZEN = {"ser-mtl-frozen": (0.0, "reverse"), "ser-mtl-grl-0.1-frozen": (0.1, "reverse"),
          "ser-mtl-grl-1-frozen": (1.0, "reverse"), "ser-mtl-forward-0.1-frozen": (0.1, "forward"),
          "ser-mtl-forward-1-frozen": (1.0, "forward")}
PAPER = ROOT.parent / "shared" / "papers" / "004_bc3e2557e40ca95b.txt"


def test_the_five_frozen_recipes_carry_the_papers_settings():
    assert {p.stem for p in RECIPES_DIR.glob("ser-mtl*-frozen.toml")} == set(FROZEN)
    for name, (beta, mode) in FROZEN.items():
        r = load_recipe(name)
        assert r.layout == "iemocap" and r.task == "iemocap4" and r.head == "fc128"
        assert r.options["ctc"] == 0.1 and r.options["adversary"] == f"speaker:{beta:g}"
        assert r.options["adversary_mode"] == mode and r.options["net"]["order"] == "fc-pool"
        assert r.options["optimizer"] == "adamw" and r.options["lr"] == 5e-5
        assert r.options["batch_size"] == 8 and r.options["epochs"] == 100
        assert r.options["warmup"] / r.options["epochs"] == pytest.approx(0.1)
        assert all("after fine-tuning" in p.note for p in r.reproduces)


@pytest.mark.skipif(not PAPER.is_file(), reason="needs ../shared/papers")
@pytest.mark.parametrize("name", sorted(FROZEN))
def test_fidelity_quotes_are_the_papers_words(name):
    paper = re.sub(r"\s+", " ", PAPER.read_text())
    for row in load_recipe(name).fidelity.rows:
        if row.quote != "not stated":
            assert re.sub(r"\s+", " ", row.quote) in paper, row.detail


@pytest.fixture(scope="module")
def iemocap_wd(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from test_iemocap import make_iemocap

    from data.corpora import read_corpus
    from data.workdir import save_corpus_ref
    from extract.base import ExtractOptions
    from extract.run import extract_corpus
    from extract.store import FeatureStore

    base = tmp_path_factory.mktemp("serrec")
    release = make_iemocap(base / "corpus")
    wd = base / "wd"
    save_corpus_ref(wd, release, "iemocap")
    extract_corpus(FeatureStore(wd), read_corpus(release, "iemocap"), "logmel:16",
                   options=ExtractOptions(workers=1))
    return wd


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_every_frozen_recipe_runs_one_epoch_on_the_01F_fold(name, iemocap_wd):
    from heads.crossval import run_cross_validation

    r = load_recipe(name)
    cfg = r.experiment_config(iemocap_wd, run_name=f"t-{name}", n_boot=0, epochs=1, seeds=1,
                              device="cpu", features=("logmel:16",), layer=None,
                              frames_field="logmel")
    study = run_cross_validation(cfg, "test-group:01F")
    ((_, result),) = study.folds
    m = result.metrics
    beta, mode = FROZEN[name]
    adv, ctc = m["aux"]["adversary"], m["aux"]["ctc"]
    assert adv["settings"]["beta"] == beta and adv["settings"]["mode"] == mode
    assert ctc["settings"]["alpha"] == 0.1 and ctc["test"]["n"] >= 1
    assert (result.run_dir / "vocab.json").is_file()
