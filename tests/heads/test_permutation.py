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
    tests = compare_conditions(scores, equal_var=False)
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
    # the saved t-tests are scipy's Student tests (the default) of the saved scores
    saved = json.loads((res.study_dir / "permutation.json").read_text())
    for t in saved["tests"]:
        ref = stats.ttest_ind(saved["scores"][t["a"]], saved["scores"][t["b"]], equal_var=True)
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
               "--layer", "0", "--head", "ridge", "--trials", "3", "--conditions", "true,shuffled",
               "--name", "cli", "--welch"])
    assert rc == 0
    assert "Welch" in capsys.readouterr().out
    assert (wd / "permutation" / "cli" / "permutation.png").stat().st_size > 0


def test_a_study_without_its_model_is_refused_with_the_two_commands_that_name_one(study, capsys):
    """Ridge is an option, never a silent default: without --recipe or --head the study stops
    and prints the paper's model and the fast option as whole commands; the ridge one runs."""
    import argparse
    import shlex

    from cli import cmd_permutation
    from cli.common import UsageError

    parser = argparse.ArgumentParser()
    cmd_permutation.add_parser(parser.add_subparsers())
    wd, _ = study
    with pytest.raises(UsageError) as err:
        cmd_permutation.run(parser.parse_args(["permutation", "--workdir", str(wd), "--features",
                                               SYNTHETIC_SPEC, "--layer", "0"]))
    lines = [line.strip() for line in str(err.value).splitlines()]
    assert "not the paper's model" in lines[0]
    paper, fast = lines[1:]
    assert paper.endswith("--layer 0 --recipe conformer-mean3")
    assert fast.endswith("--layer 0 --head ridge")
    argv = shlex.split(fast)[2:]  # drop "python run_pipeline.py"
    assert argv[0] == "permutation"
    rc = cmd_permutation.run(parser.parse_args([*argv, "--trials", "2", "--conditions",
                                                "true,shuffled", "--name", "hint"]))
    assert rc == 0 and (wd / "permutation" / "hint" / "permutation.json").exists()


# -- issue 12: the paper's protocol (Belanich et al. sec. 3.3) ---------------------------------
def test_t_tests_default_to_student_as_the_paper():
    """"two-sample t-tests": Student's pooled-variance test by default, Welch's as an option."""
    rng = np.random.default_rng(2)
    scores = {"true": list(rng.normal(0.6, 0.01, 20)), "shuffled": list(rng.normal(0.59, 0.03, 12))}
    (t,) = compare_conditions(scores)
    ref = stats.ttest_ind(scores["true"], scores["shuffled"], equal_var=True)
    assert t["t"] == pytest.approx(ref.statistic, rel=1e-12) and t["p"] == pytest.approx(ref.pvalue, rel=1e-12)
    a, b = np.asarray(scores["true"]), np.asarray(scores["shuffled"])
    sp = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    assert t["t"] == pytest.approx((a.mean() - b.mean()) / (sp * np.sqrt(1 / len(a) + 1 / len(b))))
    assert t["df"] == len(a) + len(b) - 2 and t["test"].startswith("Student")
    (w,) = compare_conditions(scores, equal_var=False)
    welch = stats.ttest_ind(scores["true"], scores["shuffled"], equal_var=False)
    assert w["t"] == pytest.approx(welch.statistic, rel=1e-12) and w["test"].startswith("Welch")
    assert w["p"] != pytest.approx(t["p"])


def _aux(n: int = 300, seed: int = 4):
    rng = np.random.default_rng(seed)
    aux = AuxLabels(country=rng.integers(0, 4, n), countries=("A", "B", "C", "D"),
                    age=np.arange(n, dtype=np.float64) + 18.0)  # unique ages: a permutation shows
    split = np.array(["Train", "Val", "Test"])[rng.integers(0, 3, n)]
    return aux, split


def test_shuffle_is_train_only_with_one_permutation_per_variable():
    aux, split = _aux()
    shuf = shuffled_aux(aux, split, np.random.default_rng(0), ("Train",))
    train = split == "Train"
    # Val and Test untouched
    assert (shuf.country[~train] == aux.country[~train]).all() and (shuf.age[~train] == aux.age[~train]).all()
    # Train: each variable a permutation of the Train values
    assert sorted(shuf.country[train]) == sorted(aux.country[train])
    assert sorted(shuf.age[train]) == sorted(aux.age[train]) and (shuf.age[train] != aux.age[train]).any()
    # independent permutations: the age permutation (readable from the unique ages) applied to
    # country is not the country column that came out
    perm = (shuf.age - 18.0).astype(int)  # row i got the age of row perm[i]
    assert (aux.country[perm] != shuf.country).any()


def test_wrong_gives_every_train_clip_a_wrong_country_and_age_and_leaves_val():
    aux, split = _aux()
    rows = np.flatnonzero(split == "Train")
    wrong = wrong_aux(aux, np.random.default_rng(1), rows)
    train = split == "Train"
    assert (wrong.country[train] != aux.country[train]).all()
    assert (np.abs(wrong.age[train] - aux.age[train]) >= 10).all()
    assert (wrong.country[~train] == aux.country[~train]).all() and (wrong.age[~train] == aux.age[~train]).all()


def test_val_is_unaltered_by_default_and_the_head_trains_per_trial(study, monkeypatch):
    """Default eval_aux = true: the Val rows of every condition's input are the true labels'
    block. A torch head is trained anew per trial with the trial's seed."""
    import heads.permutation as perm
    from heads.registry import HEADS

    assert PermutationConfig(workdir=".", features="x").eval_aux == "true"
    wd, _ = study
    seen_inputs: list[tuple[str, np.ndarray]] = []
    real_inputs = perm._inputs

    def spy_inputs(cond, Xs, aux, true_block, data, *rest):
        X = real_inputs(cond, Xs, aux, true_block, data, *rest)
        seen_inputs.append((cond, X, np.concatenate([Xs, true_block], axis=1), data.split.copy()))
        return X

    seeds: list[int] = []
    real_fit = HEADS["mlp-avb"].fit

    def spy_fit(ds, tasks, *, seed, out_dir, options):
        seeds.append(seed)
        return real_fit(ds, tasks, seed=seed, out_dir=out_dir, options=options)

    monkeypatch.setattr(perm, "_inputs", spy_inputs)
    monkeypatch.setattr(HEADS["mlp-avb"], "fit", spy_fit)
    res = run_permutation(PermutationConfig(
        workdir=str(wd), features=SYNTHETIC_SPEC, task="avb-high", layer=0, trials=2, seed=7,
        conditions=("true", "shuffled", "wrong"), name="torch", head="mlp-avb",
        head_options={"epochs": 2, "device": "cpu"}))
    assert seeds == [7, 7, 7, 8, 8, 8]  # one fit per condition and trial, the trial's seed
    for cond, X, true_X, split in seen_inputs:
        keep = split != "Train"
        np.testing.assert_array_equal(X[keep], true_X[keep])  # Val / Test: true labels
        if cond != "true":
            assert (X[~keep] != true_X[~keep]).any()  # Train: manipulated
    s = res.summary
    assert s["head"] == "mlp-avb" and s["eval_aux"] == "true" and s["test"].startswith("Student")
    assert all(len(v) == 2 for v in s["scores"].values())
    with pytest.raises(ValueError, match="ridge .* or a torch head on vectors"):
        run_permutation(PermutationConfig(workdir=str(wd), features=SYNTHETIC_SPEC, layer=0,
                                          trials=2, head="lstm"))


def test_permutation_command_trains_a_recipes_head(study, capsys):
    """--recipe: the recipe's head (mlp-avb) and options, retrained per trial; Student t-tests."""
    import argparse

    from cli import cmd_permutation

    parser = argparse.ArgumentParser()
    cmd_permutation.add_parser(parser.add_subparsers())
    wd, _ = study
    rc = cmd_permutation.run(parser.parse_args([
        "permutation", "--workdir", str(wd), "--features", SYNTHETIC_SPEC, "--layer", "0",
        "--trials", "2", "--conditions", "true,wrong", "--name", "recipe",
        "--recipe", "exvo-baseline-egemaps", "--epochs", "1"]))
    out = capsys.readouterr().out
    assert rc == 0 and "Student two-sample t-tests" in out and "head mlp-avb" in out
    saved = json.loads((wd / "permutation" / "recipe" / "permutation.json").read_text())
    assert saved["head"] == "mlp-avb" and saved["recipe"] == "exvo-baseline-egemaps"
    assert saved["config"]["head_options"]["epochs"] == 1
