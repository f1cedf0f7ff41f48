"""The permutation study: t-tests equal scipy's on the same numbers, shuffled / wrong labels
are what they claim, and true auxiliary labels help where they carry information."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmarks.probe import SYNTHETIC_SPEC, make_synthetic_workdir
from heads.permutation import (AuxLabels, PermutationConfig, compare_conditions, run_permutation,
                               shuffled_aux, wrong_aux)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Layer 0 carries almost nothing; country and age relate to the labels' latent."""
    wd = tmp_path_factory.mktemp("perm") / "wd"
    make_synthetic_workdir(wd, n_clips=400, n_layers=3, dim=8, poolings=("mean",), seed=5)
    cfg = PermutationConfig(workdir=str(wd), features=SYNTHETIC_SPEC, task="avb-high", layer=0,
                            trials=8, name="s")
    return wd, run_permutation(cfg)


def test_t_tests_equal_scipy_welch():
    rng = np.random.default_rng(0)
    scores = {"true": list(rng.normal(0.6, 0.01, 30)), "shuffled": list(rng.normal(0.58, 0.02, 30)),
              "wrong": list(rng.normal(0.57, 0.015, 25))}
    tests = compare_conditions(scores)
    assert [(t["a"], t["b"]) for t in tests] == [("true", "shuffled"), ("true", "wrong"),
                                                ("shuffled", "wrong")]
    for t in tests:
        ref = stats.ttest_ind(scores[t["a"]], scores[t["b"]], equal_var=False)
        assert t["t"] == pytest.approx(ref.statistic, rel=1e-12)
        assert t["p"] == pytest.approx(ref.pvalue, rel=1e-12)
        a, b = np.asarray(scores[t["a"]]), np.asarray(scores[t["b"]])
        # Welch-Satterthwaite degrees of freedom, written out
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        assert t["df"] == pytest.approx(df, rel=1e-9)
        pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                         / (len(a) + len(b) - 2))
        assert t["cohen_d"] == pytest.approx((a.mean() - b.mean()) / pooled)


def test_shuffled_and_wrong_labels():
    rng = np.random.default_rng(1)
    n = 200
    aux = AuxLabels(country=rng.integers(-1, 4, n), countries=("A", "B", "C", "D"),
                    age=np.where(rng.random(n) < 0.1, np.nan, rng.uniform(18, 60, n)))
    split = np.array(["Train", "Val", "Test"])[rng.integers(0, 3, n)]
    wrong = wrong_aux(aux, rng)
    have = aux.country >= 0
    assert (wrong.country[have] != aux.country[have]).all() and (wrong.country[~have] == -1).all()
    assert set(np.unique(wrong.country[have])) <= {0, 1, 2, 3}
    shift = np.abs(wrong.age - aux.age)[np.isfinite(aux.age)]
    assert (shift >= 10).all() and (shift <= 25).all()
    assert np.isnan(wrong.age[~np.isfinite(aux.age)]).all()
    shuf = shuffled_aux(aux, split, rng)
    for s in ("Train", "Val", "Test"):  # a permutation within each split
        rows = split == s
        assert sorted(shuf.country[rows]) == sorted(aux.country[rows])
    assert (shuf.country != aux.country).any()


def test_study_results_and_files(study):
    wd, res = study
    s = res.summary
    assert s["conditions"] == ["none", "true", "shuffled", "wrong"]
    assert all(len(v) == 8 for v in s["scores"].values())
    # the saved t-tests are scipy's Welch tests of the saved scores
    saved = json.loads((res.study_dir / "permutation.json").read_text())
    for t in saved["tests"]:
        ref = stats.ttest_ind(saved["scores"][t["a"]], saved["scores"][t["b"]], equal_var=False)
        assert t["t"] == pytest.approx(ref.statistic) and t["p"] == pytest.approx(ref.pvalue)
    # country and age carry information that layer 0 lacks: the true labels must help
    mean = {c: np.mean(v) for c, v in s["scores"].items()}
    assert mean["true"] > mean["shuffled"] + 0.02 and mean["true"] > mean["wrong"] + 0.02
    true_vs_shuffled = next(t for t in s["tests"] if (t["a"], t["b"]) == ("true", "shuffled"))
    assert true_vs_shuffled["p"] < 0.01
    scores = pd.read_csv(res.study_dir / "scores.csv")
    assert len(scores) == 32 and set(scores["condition"]) == set(s["conditions"])
    assert len(pd.read_csv(res.study_dir / "tests.csv")) == 6


def test_task_that_predicts_an_auxiliary_label_is_refused(study):
    wd, _ = study
    with pytest.raises(ValueError, match="would also be an input"):
        run_permutation(PermutationConfig(workdir=str(wd), features=SYNTHETIC_SPEC,
                                          task="classify:Country", trials=2))


def test_permutation_command_writes_density_plot(study, capsys):
    import argparse

    from cli import cmd_permutation

    def main(argv):  # this one command, without importing every other command
        parser = argparse.ArgumentParser()
        cmd_permutation.add_parser(parser.add_subparsers())
        return cmd_permutation.run(parser.parse_args(argv))

    wd, _ = study
    rc = main(["permutation", "--workdir", str(wd), "--features", SYNTHETIC_SPEC,
               "--layer", "0", "--trials", "3", "--conditions", "true,shuffled", "--name", "cli"])
    assert rc == 0
    assert "Welch" in capsys.readouterr().out
    assert (wd / "permutation" / "cli" / "permutation.png").stat().st_size > 0
