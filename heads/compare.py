"""Paired significance test between two runs on the same clips (``compare RUN_A RUN_B``).

Each run folder holds its per-clip predictions (``predictions_val_<task>.csv``, and
``predictions_test_<task>.csv`` when it has Test clips; see :mod:`heads.experiment`). Both runs
are scored on exactly the same clips against the labels of their workdir's corpus, with the
project's own scoring (:func:`heads.scoring.score_task`), per task (its headline) and per
target and per column when a task has several.

The difference is ``d = score(A) - score(B)`` in the metric's units, and:

* the CI of ``d`` is the percentile interval of a **paired bootstrap**: each resample draws
  clips with replacement and scores both runs on the same draw;
* the two-sided p-value of "no difference" comes from one of

  - ``bootstrap`` (default): the bootstrap distribution shifted to the null,
    ``p = (1 + #{|d*_b - d| >= |d|}) / (1 + B)`` (Efron and Tibshirani, *An Introduction to
    the Bootstrap*, 1993, section 16.4);
  - ``permutation``: per clip, the two runs' predictions are swapped with probability 1/2
    (the paired, approximate-randomisation test). With ``2**n <= resamples`` every one of the
    ``2**n`` swaps is enumerated and ``p = #{|d_s| >= |d|} / 2**n`` is exact; otherwise ``B``
    random swaps give ``p = (1 + #{|d_s| >= |d|}) / (1 + B)``.

Identical predictions give ``d = 0`` and ``p = 1`` under both tests.
"""
from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.tasks import Task, class_name, parse_tasks, resolve_task, target_array
from heads import rundir
from heads.scoring import score_task
from heads.scoring import METRICS
from heads.scoring.bootstrap import Resamples

log = logging.getLogger(__name__)

TESTS = ("bootstrap", "permutation")
"""The tests ``compare --test`` offers."""

SPLITS = ("Val", "Test")


class CompareError(ValueError):
    """The two runs cannot be compared as asked; the message says why and what to do."""


@dataclass
class RunPredictions:
    """One run's predictions of one task on one split, aligned to sorted clip ids."""

    ids: list[str]
    preds: dict[str, np.ndarray]  # target name -> (n,) class codes or (n, k) values


@dataclass
class Run:
    """A run folder: its config and where its workdir is."""

    path: Path
    name: str
    workdir: Path
    tasks: list[str]


@dataclass
class Row:
    """One compared score: a task's headline (``part`` None), a target or a column."""

    split: str
    task: str
    part: str | None
    metric: str
    greater_is_better: bool
    n: int
    score_a: float
    score_b: float
    diff: float
    ci: tuple[float, float]
    p: float
    test: str
    resamples: int

    @property
    def better(self) -> str | None:
        """``A``, ``B`` or None (no difference)."""
        if not np.isfinite(self.diff) or self.diff == 0:
            return None
        return "A" if (self.diff > 0) == self.greater_is_better else "B"


@dataclass
class Comparison:
    """Everything ``compare`` prints."""

    run_a: str
    run_b: str
    test: str
    resamples: int
    level: float
    seed: int
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for r, d in zip(self.rows, out["rows"]):
            d["ci"] = list(r.ci)
            d["better"] = r.better
        return rundir.jsonable(out)


# --------------------------------------------------------------------------------------------
def open_run(where: str | Path, workdir: str | Path | None = None) -> Run:
    """A run folder, or a run name under ``WORKDIR/runs/``.

    Raises:
        CompareError: no such run folder, or it has no readable config.json.
    """
    p = Path(where)
    candidates = [p] + ([rundir.run_dir(workdir, str(where))] if workdir is not None else [])
    for c in candidates:
        cfg_path = c / "config.json"
        if cfg_path.is_file():
            try:
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
                tasks = [t.name for t in parse_tasks(cfg["task"])]
                wd = Path(cfg["workdir"])
            except (ValueError, KeyError) as exc:
                raise CompareError(f"{cfg_path} is not a run's config ({exc}); pass a folder that "
                                   f"`train` wrote (WORKDIR/runs/<run>)") from None
            if not wd.is_absolute():  # a relative --workdir: the run folder knows where it is
                wd = c.resolve().parent.parent
            return Run(c, c.name, wd, tasks)
    looked = " or ".join(str(c) for c in candidates)
    hint = "" if workdir is not None else " (or give a run name with --workdir WORKDIR)"
    raise CompareError(f"no run folder at {looked}: pass the folder that `train` wrote, "
                       f"WORKDIR/runs/<run>{hint}")


def _predictions(run: Run, task: Task, split: str, corpus_ids: set[str]) -> RunPredictions | None:
    path = run.path / f"predictions_{split.lower()}_{rundir.safe_name(task.name)}.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    ids = []
    for raw in table["File_ID"]:  # A-VB / ExVo write [id]
        cid = raw[1:-1] if raw.startswith("[") and raw.endswith("]") and raw not in corpus_ids else raw
        ids.append(cid)
    unknown = sorted(set(ids) - corpus_ids)
    if unknown:
        raise CompareError(f"{path} names {len(unknown)} clip(s) the corpus of {run.workdir} does not "
                           f"hold (e.g. {unknown[0]!r}); was the corpus changed since the run?")
    order = np.argsort(ids, kind="stable")
    preds: dict[str, np.ndarray] = {}
    for tg in task.targets:
        missing = [c for c in tg.columns if c not in table.columns]
        if missing:
            raise CompareError(f"{path} lacks the column(s) {missing} of target {tg.name!r}")
        if tg.kind == "classification":
            index = {c: i for i, c in enumerate(tg.classes or ())}
            values = [class_name(v) for v in table[tg.columns[0]]]
            codes = np.array([index.get(v, -1) for v in values], dtype=np.int64)
            if (codes < 0).any():
                bad = next(v for v, c in zip(values, codes) if c < 0)
                raise CompareError(f"{path}: predicted class {bad!r} of {tg.name!r} is not one of "
                                   f"the corpus's classes {list(tg.classes or ())}")
            preds[tg.name] = codes[order]
        else:
            values = table[list(tg.columns)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
            bad = np.argwhere(~np.isfinite(values))
            if len(bad):
                row, col = bad[0]
                raise CompareError(f"{path} line {row + 2}: the prediction of {tg.columns[col]!r} is "
                                   f"{table[tg.columns[col]].iloc[row]!r}, not a number; rerun "
                                   f"`train` to write the predictions again")
            preds[tg.name] = values[order]
    return RunPredictions([ids[i] for i in order], preds)


def _differ(a: Sequence[str], b: Sequence[str]) -> str:
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    parts = []
    if only_a:
        parts.append(f"{len(only_a)} only in A (e.g. {only_a[0]!r})")
    if only_b:
        parts.append(f"{len(only_b)} only in B (e.g. {only_b[0]!r})")
    if not parts and len(a) != len(b):
        parts.append("a clip is listed twice")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
def score_parts(task: Task) -> list[tuple[str | None, str]]:
    """What is compared for a task, as (part, metric): the headline (part None), each target
    when the task has several, each column of a CCC target with several columns."""
    out: list[tuple[str | None, str]] = [(None, task.headline)]
    if len(task.targets) > 1:
        out += [(t.name, t.metric) for t in task.targets]
    out += [(c, "ccc") for t in task.targets
            if t.kind == "regression" and t.metric == "ccc" and len(t.columns) > 1 for c in t.columns]
    return out


def _scores(task: Task, truths: dict[str, np.ndarray], preds: dict[str, np.ndarray]) -> list[float]:
    """The scores of :func:`score_parts`, in its order."""
    s = score_task(task, truths, preds)
    out = [s["score"]]
    if len(task.targets) > 1:
        out += [s["targets"][t.name]["score"] for t in task.targets]
    out += [s["targets"][t.name]["per_column"][c] for t in task.targets
            if t.kind == "regression" and t.metric == "ccc" and len(t.columns) > 1 for c in t.columns]
    return out


def _ge(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``values >= ref`` up to rounding (a swap that changes nothing must count as a tie)."""
    return values >= ref - 1e-12 * np.maximum(1.0, np.abs(ref))


def paired_bootstrap(task: Task, truths: dict[str, np.ndarray], pa: dict[str, np.ndarray],
                     pb: dict[str, np.ndarray], *, resamples: int, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Observed differences (one per compared score) and the bootstrap ones ``(B', scores)``.

    Resamples where a score is undefined (e.g. a CCC of constant labels) are left out, per
    score (NaN rows of the returned matrix).
    """
    n = len(next(iter(truths.values())))
    d = np.subtract(_scores(task, truths, pa), _scores(task, truths, pb))
    boot = np.full((resamples, len(d)), np.nan)
    rows = np.arange(n)
    b = 0
    for counts in Resamples(n, resamples, seed).chunks():  # the project's one bootstrap draw
        for w in counts.astype(np.int64):
            idx = np.repeat(rows, w)  # the clips of one resample (each as often as drawn)
            t = {k: v[idx] for k, v in truths.items()}
            boot[b] = np.subtract(_scores(task, t, {k: v[idx] for k, v in pa.items()}),
                                  _scores(task, t, {k: v[idx] for k, v in pb.items()}))
            b += 1
    return d, boot


def permutation_diffs(task: Task, truths: dict[str, np.ndarray], pa: dict[str, np.ndarray],
                      pb: dict[str, np.ndarray], *, resamples: int, seed: int
                      ) -> tuple[np.ndarray, bool]:
    """Differences under random per-clip swaps ``(S, scores)``, and whether they are exact
    (every one of the ``2**n`` swaps, when that is at most ``resamples``)."""
    n = len(next(iter(truths.values())))
    exact = n < 63 and 2 ** n <= resamples
    if exact:
        swaps: Any = (np.array(bits, dtype=bool) for bits in itertools.product((False, True), repeat=n))
        count = 2 ** n
    else:
        rng = np.random.default_rng(seed)
        swaps = (rng.random(n) < 0.5 for _ in range(resamples))
        count = resamples
    out = np.full((count, len(score_parts(task))), np.nan)
    for s, swap in enumerate(swaps):
        xa, xb = {}, {}
        for k in pa:
            m = swap.reshape(-1, *([1] * (pa[k].ndim - 1)))
            xa[k] = np.where(m, pb[k], pa[k])
            xb[k] = np.where(m, pa[k], pb[k])
        out[s] = np.subtract(_scores(task, truths, xa), _scores(task, truths, xb))
    return out, exact


def _p_shifted(d: float, boot: np.ndarray) -> float:
    ok = boot[np.isfinite(boot)]
    if not np.isfinite(d) or not len(ok):
        return float("nan")
    return float((1 + _ge(np.abs(ok - d), np.abs(d)).sum()) / (1 + len(ok)))


def _p_permutation(d: float, diffs: np.ndarray, exact: bool) -> float:
    ok = diffs[np.isfinite(diffs)]
    if not np.isfinite(d) or not len(ok):
        return float("nan")
    hits = int(_ge(np.abs(ok), np.abs(d)).sum())
    return float(hits / len(ok)) if exact else float((1 + hits) / (1 + len(ok)))


# --------------------------------------------------------------------------------------------
def compare_runs(run_a: Run, run_b: Run, *, test: str = "bootstrap", resamples: int = 5000,
                 seed: int = 0, level: float = 0.95) -> Comparison:
    """Score both runs on the same clips and test their difference, per split, task and target.

    Val is always compared; Test when both runs have Test predictions and the corpus has
    Test labels.

    Raises:
        CompareError: other tasks, other clips, other labels, missing predictions, bad options.
    """
    from data.workdir import open_corpus

    if test not in TESTS:
        raise CompareError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    if resamples < 1:
        raise CompareError(f"resamples must be at least 1, got {resamples}")
    if not 0 < level < 1:
        raise CompareError(f"the CI level must be between 0 and 1, got {level}")
    if sorted(run_a.tasks) != sorted(run_b.tasks):
        raise CompareError(f"the runs predict other tasks: A ({run_a.path}) {run_a.tasks}, B "
                           f"({run_b.path}) {run_b.tasks}; compare two runs of the same task(s)")
    corpus_a = open_corpus(run_a.workdir)
    corpus_b = corpus_a if run_b.workdir.resolve() == run_a.workdir.resolve() else open_corpus(run_b.workdir)
    out = Comparison(run_a.name, run_b.name, test, resamples, level, seed)
    alpha = 1 - level
    for split in SPLITS:
        for name in run_a.tasks:
            task = resolve_task(name, corpus_a.labels)
            got = [_predictions(r, task, split, set(c.clips.index))
                   for r, c in ((run_a, corpus_a), (run_b, corpus_b))]
            if got[0] is None and got[1] is None:
                if split == "Val":
                    raise CompareError(f"neither run has Val predictions of {name} "
                                       f"({run_a.path}, {run_b.path}); rerun `train`, which writes them")
                continue
            if got[0] is None or got[1] is None:
                which = "A" if got[0] is None else "B"
                if split == "Val":
                    raise CompareError(f"run {which} has no Val predictions of {name}; rerun its "
                                       f"`train`, which writes them")
                out.notes.append(f"{split} of {name} not compared: run {which} has no {split} "
                                 f"predictions")
                continue
            pa, pb = got
            if pa.ids != pb.ids:
                raise CompareError(
                    f"the runs scored other {split} clips for {name} ({len(pa.ids)} in A, "
                    f"{len(pb.ids)} in B: {_differ(pa.ids, pb.ids)}); a paired test needs the same "
                    f"clips: train both on the same corpus, split and stored clips")
            truths = {tg.name: target_array(tg, corpus_a.labels, pa.ids) for tg in task.targets}
            if corpus_b is not corpus_a:
                tb = resolve_task(name, corpus_b.labels)
                other = {tg.name: target_array(tg, corpus_b.labels, pa.ids) for tg in tb.targets}
                if any(not np.array_equal(truths[k], other[k], equal_nan=True) for k in truths):
                    raise CompareError(f"the {split} labels of {name} differ between the corpora of "
                                       f"{run_a.workdir} and {run_b.workdir}; compare runs scored "
                                       f"against the same labels")
            labelled = [np.isfinite(v).any() if v.dtype.kind == "f" else (v >= 0).any()
                        for v in truths.values()]
            if not any(labelled):
                if split == "Val":
                    raise CompareError(f"the Val clips of {name} have no labels; nothing to compare")
                out.notes.append(f"{split} of {name} not compared: no {split} labels")
                continue
            out.rows += _rows(split, task, truths, pa.preds, pb.preds, test=test,
                              resamples=resamples, seed=seed, alpha=alpha)
    return out


def _rows(split: str, task: Task, truths: dict[str, np.ndarray], pa: dict[str, np.ndarray],
          pb: dict[str, np.ndarray], *, test: str, resamples: int, seed: int, alpha: float
          ) -> list[Row]:
    sa, sb = _scores(task, truths, pa), _scores(task, truths, pb)
    d, boot = paired_bootstrap(task, truths, pa, pb, resamples=resamples, seed=seed)
    if test == "permutation":
        diffs, exact = permutation_diffs(task, truths, pa, pb, resamples=resamples, seed=seed)
        p = [_p_permutation(d[j], diffs[:, j], exact) for j in range(len(d))]
        name, used = ("permutation (exact)" if exact else "permutation"), len(diffs)
    else:
        p = [_p_shifted(d[j], boot[:, j]) for j in range(len(d))]
        name, used = "paired bootstrap", resamples
    what = score_parts(task)
    rows = []
    n = len(next(iter(truths.values())))
    for j, (target, metric) in enumerate(what):
        col = boot[:, j][np.isfinite(boot[:, j])]
        ci = ((float(np.quantile(col, alpha / 2)), float(np.quantile(col, 1 - alpha / 2)))
              if len(col) else (float("nan"), float("nan")))
        rows.append(Row(split, task.name, target, metric, METRICS[metric].greater_is_better, n,
                        float(sa[j]), float(sb[j]), float(d[j]), ci, p[j], name, used))
    return rows


__all__ = ["TESTS", "CompareError", "Run", "Row", "Comparison", "open_run", "compare_runs",
           "paired_bootstrap", "permutation_diffs",
           "score_parts"]
