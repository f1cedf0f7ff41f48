"""``compare RUN_A RUN_B`` through the real command line, on runs whose answer is known and
against a reference written here: CCC from its formula, UAR from scikit-learn, the exact
permutation test by enumerating every swap, the bootstrap by drawing the same resamples."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import recall_score

from data.demo import make_demo_corpus

from clitools import cli

pytestmark = pytest.mark.slow  # a dozen subprocesses (each a few seconds on a busy machine)

REG, CLS = "regress:valence,arousal", "classify:emotion"


@pytest.fixture(scope="module")
def wd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A csv corpus (36 Train, 12 Val, 12 Test clips; some unlabelled) and runs of two heads
    for each of a regression and a classification task."""
    root = tmp_path_factory.mktemp("cmp")
    demo = make_demo_corpus(root / "demo", n_clips=60, seed=2)
    two = pd.read_csv(demo / "labels" / "two_info.csv")
    kind = pd.read_csv(demo / "labels" / "type_info.csv")
    ids = [i.strip("[]") for i in two["File_ID"]]
    table = pd.DataFrame({"file": [f"audio/wav/{i}.wav" for i in ids],
                          "split": ["train"] * 36 + ["val"] * 12 + ["test"] * 12,
                          "valence": two["Valence"], "arousal": two["Arousal"],
                          "emotion": kind["Voc_Type"]})
    table.to_csv(demo / "labels.csv", index=False)
    w = root / "wd"
    cli("extract", "--corpus", str(demo), "--layout", "csv", "--labels", str(demo / "labels.csv"),
        "--workdir", str(w), "--features", "opensmile:eGeMAPSv02", "--workers", "1", "--no-progress")
    for task, head, run in ((REG, "ridge", "reg_ridge"), (REG, "svr", "reg_svr"),
                            (CLS, "logreg", "cls_logreg"), (CLS, "ridge", "cls_ridge")):
        cli("train", "--workdir", str(w), "--task", task, "--features", "opensmile:eGeMAPSv02",
            "--head", head, "--run-name", run)
    return w


def _compare(wd: Path, a: str, b: str, *extra: str) -> dict:
    extra = extra if "--resamples" in extra else (*extra, "--resamples", "1000")
    out = json.loads(cli("compare", a, b, "--workdir", str(wd), "--json", *extra).stdout)
    return {(r["split"], r["task"], r["part"]): r for r in out["rows"]}


def _preds(wd: Path, run: str, split: str, task: str) -> pd.DataFrame:
    name = task.replace(":", "_").replace(",", "_")
    return pd.read_csv(wd / "runs" / run / f"predictions_{split}_{name}.csv").sort_values("File_ID")


def _truth(wd: Path, ids) -> pd.DataFrame:
    root = Path(json.loads((wd / "corpus.json").read_text())["root"])
    t = pd.read_csv(root / "labels.csv")
    t.index = [f[:-len(".wav")] for f in t["file"]]  # a csv corpus's clip id: the file, no suffix
    for c in ("valence", "arousal"):  # the project holds regression labels as float32
        t[c] = t[c].astype(np.float32).astype(float)
    return t.loc[list(ids)]


def _ccc(t: np.ndarray, p: np.ndarray) -> float:
    """Lin's CCC with population moments, from its formula, over the labelled clips."""
    keep = np.isfinite(t)
    t, p = t[keep], p[keep]
    if len(t) < 2:
        return float("nan")
    cov = np.mean((t - t.mean()) * (p - p.mean()))
    return 2 * cov / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)


def _mean_ccc(t: pd.DataFrame, p: pd.DataFrame) -> float:
    """The task's headline: the mean of the columns' CCCs that are defined."""
    cols = [_ccc(t[c].to_numpy(float), p[c].to_numpy(float)) for c in ("valence", "arousal")]
    cols = [c for c in cols if np.isfinite(c)]
    return float(np.mean(cols)) if cols else float("nan")


def _constructed(wd: Path, src: str, name: str, *, oracle: bool) -> None:
    """A copy of run ``src`` whose regression predictions are the labels + 0.01 noise
    (``oracle``), or uniform noise that knows nothing of the labels."""
    shutil.copytree(wd / "runs" / src, wd / "runs" / name, dirs_exist_ok=True)
    rng = np.random.default_rng(1 if oracle else 2)
    for split in ("val", "test"):
        p = _preds(wd, src, split, REG)
        t = _truth(wd, p["File_ID"].astype(str))
        for c in ("valence", "arousal"):
            truth = np.nan_to_num(t[c].to_numpy(), nan=0.5)  # unlabelled clips are not scored
            p[c] = truth + 0.01 * rng.standard_normal(len(p)) if oracle else rng.random(len(p))
        p.to_csv(wd / "runs" / name / f"predictions_{split}_regress_valence_arousal.csv", index=False)


def test_identical_runs_differ_by_zero_with_p_one(wd):
    shutil.copytree(wd / "runs" / "reg_ridge", wd / "runs" / "same", dirs_exist_ok=True)
    for test in ("bootstrap", "permutation"):
        rows = _compare(wd, "reg_ridge", "same", "--test", test)
        assert {k[0] for k in rows} == {"Val", "Test"}  # Test labels exist: compared too
        assert {k[2] for k in rows} == {None, "valence", "arousal"}
        for r in rows.values():
            assert r["diff"] == 0 and r["p"] == 1 and r["ci"] == [0, 0] and r["better"] is None
            assert r["score_a"] == r["score_b"]


def test_a_clearly_better_run_gets_a_small_p(wd):
    _constructed(wd, "reg_ridge", "oracle", oracle=True)
    _constructed(wd, "reg_ridge", "noise", oracle=False)
    for test in ("bootstrap", "permutation"):
        rows = _compare(wd, "oracle", "noise", "--test", test)
        for split in ("Val", "Test"):
            r = rows[(split, REG, None)]
            assert r["score_a"] > 0.99 and r["diff"] > 0.5 and r["better"] == "A"
            assert r["ci"][0] > 0 and 1 / 1001 <= r["p"] < 0.02, r
    assert r["test"] == "permutation" and r["resamples"] == 1000  # 2**12 > 1000: random swaps
    r = _compare(wd, "noise", "oracle")[("Val", REG, None)]  # the other way round
    assert r["diff"] < -0.5 and r["better"] == "B" and r["ci"][1] < 0


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_permutation_p_equals_an_exact_enumeration_with_sklearn_uar(wd):
    def _uar(t, p):  # the project's UAR: macro recall over the classes in truth or prediction
        return recall_score(t, p, average="macro", zero_division=0)

    a, b = _preds(wd, "cls_logreg", "val", CLS), _preds(wd, "cls_ridge", "val", CLS)
    assert list(a["File_ID"]) == list(b["File_ID"])
    y = _truth(wd, a["File_ID"].astype(str))["emotion"]
    keep = y.notna().to_numpy()  # unlabelled clips are not scored
    y, pa, pb = y.to_numpy()[keep], a["emotion"].to_numpy()[keep], b["emotion"].to_numpy()[keep]
    d = _uar(y, pa) - _uar(y, pb)
    hits = 0
    for swap in itertools.product((False, True), repeat=len(y)):
        s = np.array(swap)
        xa, xb = np.where(s, pb, pa), np.where(s, pa, pb)
        hits += abs(_uar(y, xa) - _uar(y, xb)) >= abs(d) - 1e-12
    r = _compare(wd, "cls_logreg", "cls_ridge", "--test", "permutation", "--resamples", "4096"
                 )[("Val", CLS, None)]
    assert r["test"] == "permutation (exact)" and r["resamples"] == 4096
    assert r["score_a"] == pytest.approx(_uar(y, pa), abs=1e-12)
    assert r["diff"] == pytest.approx(d, abs=1e-12)
    assert r["p"] == pytest.approx(hits / 2 ** len(y), abs=1e-12)


def test_bootstrap_p_and_ci_equal_a_reference_on_the_same_resamples(wd):
    B, seed = 300, 7
    a, b = _preds(wd, "reg_ridge", "test", REG), _preds(wd, "reg_svr", "test", REG)
    t = _truth(wd, a["File_ID"].astype(str))
    n = len(t)
    d = _mean_ccc(t, a) - _mean_ccc(t, b)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(B):
        idx = rng.integers(0, n, n)
        ti, ai, bi = t.iloc[idx], a.iloc[idx], b.iloc[idx]
        boot.append(_mean_ccc(ti, ai) - _mean_ccc(ti, bi))
    boot = np.array(boot)
    boot = boot[np.isfinite(boot)]  # a resample with an undefined CCC is left out
    p = (1 + np.sum(np.abs(boot - d) >= abs(d) - 1e-12)) / (1 + len(boot))
    r = _compare(wd, "reg_ridge", "reg_svr", "--resamples", str(B), "--seed", str(seed),
                 "--level", "0.9")[("Test", REG, None)]
    assert r["diff"] == pytest.approx(d, abs=1e-9)
    assert r["p"] == pytest.approx(p, abs=1e-12)
    assert r["ci"] == pytest.approx([np.quantile(boot, 0.05), np.quantile(boot, 0.95)], abs=1e-9)
    assert len(boot) > 0.9 * B and p < 1


def test_the_table_a_user_reads(wd):
    p = cli("compare", "reg_ridge", "reg_svr", "--workdir", str(wd), "--resamples", "200")
    val = next(ln for ln in p.stdout.splitlines() if ln.startswith(f"Val {REG}:"))
    for part in ("ccc (higher is better, n=12)", " A ", " B ", "A-B ", "95% CI", "p = ",
                 "[paired bootstrap, 200]"):
        assert part in val, val
    assert any(ln.startswith(f"  Val {REG}/valence") or f"{REG}/valence" in ln
               for ln in p.stdout.splitlines())


def test_refuses_other_tasks_other_clips_and_missing_runs(wd):
    p = cli("compare", "reg_ridge", "cls_logreg", "--workdir", str(wd), check=2)
    assert "other tasks" in p.stderr and REG in p.stderr and CLS in p.stderr
    fewer = wd / "runs" / "fewer"
    shutil.copytree(wd / "runs" / "reg_ridge", fewer, dirs_exist_ok=True)
    csv = fewer / "predictions_val_regress_valence_arousal.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:-1]) + "\n")
    dropped = lines[-1].split(",")[0]
    p = cli("compare", "reg_ridge", str(fewer), "--workdir", str(wd), check=2)
    assert "other Val clips" in p.stderr and "1 only in A" in p.stderr and dropped in p.stderr
    p = cli("compare", "reg_ridge", "nope", "--workdir", str(wd), check=2)
    assert str(wd / "runs" / "nope") in p.stderr and "WORKDIR/runs/<run>" in p.stderr
