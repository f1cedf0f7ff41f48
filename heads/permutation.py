"""The task-relationship permutation study of seed 001 (Belanich et al., sec. 3.3): do auxiliary
labels help, and is it their information or just extra inputs?

One concept, at length: the permutation study — its auxiliary labels and their manipulations,
the per-trial fits of its head (on vectors or on frames) and the t-tests between conditions.

Auxiliary labels of each clip (country as a one-hot block, age standardised on Train) are
concatenated to the features of one SSL layer, and a head predicts the task (e.g. the 10
emotions). Conditions::

    none      features only (reference)
    true      the clip's own auxiliary labels
    shuffled  "we shuffled the country and age values (with different random seeds for each
              variable) across all samples in the training set": country and age permuted
              across the Train clips, each variable with its own permutation
    wrong     "assigning incorrect country and age labels for all samples": each Train clip
              gets a country other than its own (uniformly among the others) and its age moved
              by 10 to 25 years up or down (random sign)

The model (``head``): a torch head trained anew in every trial with the trial's seed, as the
paper retrains its model 50 times (``permutation --recipe NAME`` takes a recipe's head and
training options); or ``ridge``, the fast option and not the paper's model, whose
deterministic fit gets its trial-to-trial variation from a bootstrap resample of Train (the
same resample serves every condition of a trial). A vector head (``ridge``, ``mlp-avb``,
``mlp-mtl``) reads the layer's pooled vector with the auxiliary block concatenated. A sequence
head (:data:`CONFORMER_HEADS`: ``mean3``, ``autopool``, ``fc128``, ``lstm128``, ``netvlad``,
the paper's Conformer heads, e.g. ``--recipe conformer-mean3``) reads the stored frames (the
recipe's ``frames_field``, else ``frames_l<layer>``) with the auxiliary block appended to every
frame (:class:`heads.sequences.SequencesWithClipVectors`): "the country and age variables
concatenated to the input Conformer features"; the head's windows and pooling see it on every
frame. Each trial draws fresh shuffles / wrong labels; the Val score of every condition is
recorded.

Val and Test are left unaltered by default (``eval_aux="true"``: "scores from the unaltered
validation set"); ``eval_aux="same"`` manipulates them as well (shuffled within each split).

Conditions are compared with two-sample t-tests (``scipy.stats.ttest_ind``, two-sided): the
Student form with a pooled variance by default, as the paper's "two-sample t-tests"; Welch's
unequal-variance form with ``welch=True``; Cohen's d (pooled standard deviation) beside them.

Missing auxiliary values: no country -> an all-zero block, no age -> the Train mean; they
stay missing under every condition. A sequence head leaves a Train clip without stored frames
out of training; a Val / Test clip without frames is fed one Train-mean frame (no labels).
The features are standardised on Train (the torch heads standardise their whole input on Train
again; a sequence head over every Train frame, the appended labels included); the one-hot
block is left as 0/1. Ridge's alpha is chosen on Val per condition and trial (the ``ridge``
head's grid).

Writes ``WORKDIR/permutation/<name>/permutation.json``, ``scores.csv`` (trial, condition,
score) and ``tests.csv``.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.tasks import class_name, parse_tasks, resolve_task
from extract.store import FeatureStore
from heads.classical import RIDGE_ALPHAS
from heads.features import find_set, request_checks, resolve_field
from heads.probe import ProbeData, fit_ridge_task, load_probe_data, standardise
from heads.rundir import read_results
from heads.rundir import write_text as write_text_atomic
from heads.scoring import HEADLINE_TEXT, score_task
from heads.sequences import SequenceSet, SequencesWithClipVectors, choose_frames_field, load_sequences

log = logging.getLogger(__name__)

PERMUTATION_DIR = "permutation"
CONDITIONS = ("none", "true", "shuffled", "wrong")
"""The conditions, in report order."""
AUX_COLUMNS = {"country": "Country", "age": "Age"}
"""Auxiliary label name -> label column."""
WRONG_AGE_SHIFT = (10.0, 25.0)
"""Years by which a wrong age differs from the true one (uniform, random sign)."""


@dataclass(frozen=True)
class PermutationConfig:
    """Everything that defines a permutation study (saved in permutation.json).

    Attributes:
        workdir: the workdir.
        features: an SSL feature set (spec, name or key).
        task: the task predicted (must not use an auxiliary column itself).
        layer: SSL layer (None = the last stored one).
        pooling: SSL pooling.
        aux: auxiliary labels, from ``country`` and ``age``.
        conditions: from :data:`CONDITIONS`.
        trials: trials per condition.
        eval_aux: ``true`` (default: Val/Test keep their true labels, only Train is
            manipulated, as the paper) or ``same`` (Val/Test get the condition's labels).
        seed: base seed; trial t uses ``numpy.random.default_rng([seed, t])`` for the labels
            and ``seed + t`` as the torch head's seed.
        alphas: ridge grid.
        name: folder name under permutation/ (default: settings + time).
        n_jobs: BLAS threads.
        head: ``ridge`` (the fast option) or a torch head (vectors, or frame sequences with
            the auxiliary block on every frame) trained per trial.
        head_options: the torch head's training options (:class:`heads.config.TrainOptions`).
        recipe: the recipe the head and its options came from (recorded only).
        welch: Welch's unequal-variance t-test instead of Student's (the paper's).
    """

    workdir: str
    features: str
    task: str = "avb-high"
    layer: int | None = None
    pooling: str = "mean"
    aux: tuple[str, ...] = ("country", "age")
    conditions: tuple[str, ...] = CONDITIONS
    trials: int = 50
    eval_aux: str = "true"
    seed: int = 0
    alphas: tuple[float, ...] = RIDGE_ALPHAS
    name: str | None = None
    n_jobs: int = 1
    head: str = "ridge"
    head_options: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    welch: bool = False


@dataclass
class PermutationResult:
    study_dir: Path
    summary: dict[str, Any]


# --------------------------------------------------------------------------------------------
# auxiliary labels
# --------------------------------------------------------------------------------------------


@dataclass
class AuxLabels:
    """Auxiliary labels of every row: country codes (-1 missing) and ages (NaN missing)."""

    country: np.ndarray | None  # (n,) int, -1 = missing
    countries: tuple[str, ...]
    age: np.ndarray | None  # (n,) float, NaN = missing


def read_aux(labels: pd.DataFrame, ids: list[str], aux: tuple[str, ...],
             train_rows: np.ndarray) -> AuxLabels:
    """The auxiliary columns of ``ids``.

    Raises:
        ValueError: an unknown auxiliary name, a missing column, or no Train value.
    """
    unknown = [a for a in aux if a not in AUX_COLUMNS]
    if unknown or not aux:
        raise ValueError(f"auxiliary labels must be among {sorted(AUX_COLUMNS)}, got {list(aux)}")
    rows = labels.reindex(ids)
    country = age = None
    countries: tuple[str, ...] = ()
    for a in aux:
        col = AUX_COLUMNS[a]
        if col not in rows.columns:
            raise ValueError(f"auxiliary label {a!r} needs column {col!r}, which the corpus lacks; "
                             f"columns: {list(labels.columns)}")
    if "country" in aux:
        names = [class_name(v) for v in rows[AUX_COLUMNS["country"]]]
        countries = tuple(sorted({names[i] for i in train_rows if names[i] is not None}))
        if len(countries) < 2:
            raise ValueError(f"country needs at least 2 countries on Train, found {list(countries)}")
        index = {c: i for i, c in enumerate(countries)}
        country = np.array([index.get(n, -1) for n in names], dtype=np.int64)
    if "age" in aux:
        age = pd.to_numeric(rows[AUX_COLUMNS["age"]], errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(age[train_rows]).any():
            raise ValueError("age has no value on Train")
    return AuxLabels(country, countries, age)


def shuffled_aux(aux: AuxLabels, split: np.ndarray, rng: np.random.Generator,
                 splits: tuple[str, ...] | None = None) -> AuxLabels:
    """Country and age each permuted across the clips of each split in ``splits`` (None:
    every split), with two independent permutations ("different random seeds for each
    variable"); rows of other splits keep their labels."""
    country_rng, age_rng = rng.spawn(2)

    def permuted(values: np.ndarray | None, gen: np.random.Generator) -> np.ndarray | None:
        if values is None:
            return None
        perm = np.arange(len(split))
        for s in (np.unique(split) if splits is None else splits):
            rows = np.flatnonzero(split == s)
            perm[rows] = rows[gen.permutation(len(rows))]
        return values[perm]

    return AuxLabels(permuted(aux.country, country_rng), aux.countries, permuted(aux.age, age_rng))


def wrong_aux(aux: AuxLabels, rng: np.random.Generator, rows: np.ndarray | None = None) -> AuxLabels:
    """Deliberately wrong labels for ``rows`` (None: every row): another country than the
    clip's own (uniform among the others), the age moved by 10-25 years with a random sign.
    Missing values stay missing; other rows keep their labels."""
    n = len(aux.country if aux.country is not None else aux.age)
    sel = np.zeros(n, dtype=bool)
    sel[np.arange(n) if rows is None else rows] = True
    country = age = None
    if aux.country is not None:
        k = len(aux.countries)
        offset = rng.integers(1, k, size=n)  # never 0: always another country
        country = np.where(sel & (aux.country >= 0), (aux.country + offset) % k, aux.country)
    if aux.age is not None:
        shift = rng.uniform(*WRONG_AGE_SHIFT, size=n) * rng.choice([-1.0, 1.0], n)
        age = np.where(sel, aux.age + shift, aux.age)
    return AuxLabels(country, aux.countries, age)


def aux_matrix(aux: AuxLabels, age_mean: float, age_std: float) -> np.ndarray:
    """(n, k) float32 block: country one-hot (zeros when missing), standardised age (0 when
    missing)."""
    blocks = []
    if aux.country is not None:
        onehot = np.zeros((len(aux.country), len(aux.countries)), dtype=np.float32)
        ok = aux.country >= 0
        onehot[np.flatnonzero(ok), aux.country[ok]] = 1.0
        blocks.append(onehot)
    if aux.age is not None:
        z = (aux.age - age_mean) / age_std
        blocks.append(np.where(np.isfinite(z), z, 0.0).astype(np.float32)[:, None])
    return np.concatenate(blocks, axis=1)


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def compare_conditions(scores: dict[str, list[float]], *, equal_var: bool = True
                       ) -> list[dict[str, Any]]:
    """Two-sample t-test (two-sided) and Cohen's d for every pair of conditions.

    Args:
        scores: condition -> trial scores.
        equal_var: Student's test with a pooled variance (the paper's two-sample t-test);
            False: Welch's unequal-variance test.

    Returns:
        One dict per pair (in condition order): a, b, mean_a, mean_b, diff (a - b), t, df,
        p, cohen_d, n_a, n_b. t and p are NaN when a test is undefined (fewer than 2 trials,
        or no variance in either condition).

    Example:
        >>> r = compare_conditions({"a": [1.0, 2.0, 3.0], "b": [2.0, 3.0, 4.0]})[0]
        >>> round(r["t"], 4), round(r["p"], 4), r["df"]
        (-1.2247, 0.2879, 4.0)
    """
    from scipy import stats

    out = []
    for a, b in itertools.combinations(scores, 2):
        x = np.asarray(scores[a], dtype=np.float64)
        y = np.asarray(scores[b], dtype=np.float64)
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        t = p = df = float("nan")
        if len(x) >= 2 and len(y) >= 2 and (np.var(x) > 0 or np.var(y) > 0):
            res = stats.ttest_ind(x, y, equal_var=equal_var)
            t, p = float(res.statistic), float(res.pvalue)
            df = float(getattr(res, "df", float("nan")))
        pooled = np.sqrt(((len(x) - 1) * np.var(x, ddof=1) + (len(y) - 1) * np.var(y, ddof=1))
                         / max(1, len(x) + len(y) - 2)) if len(x) > 1 and len(y) > 1 else 0.0
        d = float((x.mean() - y.mean()) / pooled) if pooled > 0 else float("nan")
        out.append({"a": a, "b": b, "mean_a": float(x.mean()) if len(x) else float("nan"),
                    "mean_b": float(y.mean()) if len(y) else float("nan"),
                    "diff": float(x.mean() - y.mean()) if len(x) and len(y) else float("nan"),
                    "t": t, "df": df, "p": p, "cohen_d": d, "n_a": int(len(x)), "n_b": int(len(y)),
                    "test": test_name(equal_var)})
    return out


def test_name(equal_var: bool) -> str:
    """The t-test's name as studies record it."""
    if equal_var:
        return "Student two-sample t-test (scipy.stats.ttest_ind, equal_var=True), two-sided"
    return "Welch two-sample t-test (scipy.stats.ttest_ind, equal_var=False), two-sided"


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------


def _check(cfg: PermutationConfig) -> None:
    if cfg.trials < 2:
        raise ValueError(f"trials must be at least 2 (a t-test needs a spread), got {cfg.trials}")
    bad = [c for c in cfg.conditions if c not in CONDITIONS]
    if bad or not cfg.conditions:
        raise ValueError(f"conditions must be among {list(CONDITIONS)}, got {list(cfg.conditions)}")
    if cfg.eval_aux not in ("same", "true"):
        raise ValueError(f"eval_aux must be 'same' or 'true', got {cfg.eval_aux!r}")
    if cfg.head != "ridge":
        torch_vector, torch_sequence = study_heads()
        if cfg.head not in torch_vector + torch_sequence:
            raise ValueError(f"the study's head must be ridge (the fast option) or a torch head "
                             f"on vectors ({', '.join(torch_vector)}) or on frame sequences "
                             f"({', '.join(torch_sequence)}); got {cfg.head!r}")


CONFORMER_HEADS = ("autopool", "fc128", "lstm128", "mean3", "netvlad")
"""The sequence heads the study trains: the paper's Conformer heads (Table 1; the heads of the
``conformer-*`` recipes), which read SSL frames. Other sequence heads (the spectrogram CNNs, the
``lstm`` of another paper) are not the study's: labels appended to log-mel bins are no
"concatenation to the input Conformer features"."""


def study_heads() -> tuple[list[str], list[str]]:
    """The torch heads the study can train: (on vectors, on frame sequences)."""
    from heads.registry import HEADS, head_names

    torch = head_names("torch")
    return (sorted(n for n in torch if HEADS[n].input_kind == "vector"),
            sorted(n for n in torch if HEADS[n].input_kind == "sequence" and n in CONFORMER_HEADS))


def is_sequence_head(head: str) -> bool:
    """Whether the study's ``head`` reads frame sequences (the auxiliary block on every frame)."""
    return head != "ridge" and head in study_heads()[1]


HEAD_TEXT_RIDGE = ("ridge, the fast option (a closed-form ridge regression on the pooled "
                   "vector, bootstrap trials), not the paper's model")
"""How a ridge study names its head (permutation.json ``head_text``, the report)."""


def head_text(cfg: PermutationConfig, frames_field: str | None) -> str:
    """One line saying which head ran and on what."""
    if cfg.head == "ridge":
        return HEAD_TEXT_RIDGE
    recipe = f"recipe {cfg.recipe}'s " if cfg.recipe else ""
    if frames_field is not None:
        return (f"{recipe}{cfg.head} (a torch sequence head) on the stored {frames_field} frames "
                "with the auxiliary labels appended to every frame, trained anew per trial")
    return (f"{recipe}{cfg.head} (a torch head on the pooled vector plus the auxiliary labels), "
            "trained anew per trial")


def run_permutation(cfg: PermutationConfig, *, progress: Callable[[int, int, str], None] | None = None
                    ) -> PermutationResult:
    """Run every trial of every condition and write the study's folder.

    Raises:
        FeatureError: the set, layer or pooling is not stored.
        TaskError: the corpus lacks the task's columns.
        ValueError: bad settings, an auxiliary column the task predicts, missing aux columns.
    """
    from data.workdir import open_corpus
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    _check(cfg)
    store = FeatureStore(cfg.workdir)
    sequence = is_sequence_head(cfg.head)
    frames_field: str | None = None
    if sequence:
        from heads.config import TrainOptions

        opts = TrainOptions.from_dict(cfg.head_options)
        header = find_set(store, cfg.features,
                          lambda h: choose_frames_field([h], opts.frames_field, cfg.layer))
        _, frames_field = choose_frames_field([header], opts.frames_field, cfg.layer)
        field, index = frames_field, None
        layer = header.fields[frames_field].attrs.get("layer", cfg.layer)
    else:
        header = find_set(store, cfg.features, request_checks(None, cfg.layer, cfg.pooling))
        field, index, layer = resolve_field(header, None, cfg.layer, cfg.pooling)
    tasks = parse_tasks(cfg.task)
    if len(tasks) != 1:
        raise ValueError(f"the study predicts one task, got {[t.name for t in tasks]}")
    used = [a for a in cfg.aux if AUX_COLUMNS.get(a) in tasks[0].columns]
    if used:
        raise ValueError(f"task {tasks[0].name} predicts {[AUX_COLUMNS[a] for a in used]}, which "
                         f"would also be an input; choose e.g. --task avb-high")
    corpus = open_corpus(cfg.workdir, need_split=True)
    task = resolve_task(tasks[0], corpus.labels)
    data = load_probe_data(store, header, corpus, task)
    tr = data.rows("Train")
    aux = read_aux(corpus.labels, data.ids, cfg.aux, tr)
    age_mean = age_std = 0.0
    if aux.age is not None:
        age_mean = float(np.nanmean(aux.age[tr]))
        age_std = float(np.nanstd(aux.age[tr])) or 1.0
    seqs: SequenceSet | None = None
    if sequence:  # frames standardised per batch by the head (aux columns included)
        seqs, present, _ = load_sequences(store, [header.key], data.ids, frames_field=frames_field,
                                          max_memory_gb=opts.max_memory_gb)
        Xs, bad = np.zeros((len(data.ids), 0), np.float32), ~present
    else:
        X, _ = store.read(header.key, field, data.ids, index=index)
        Xs, bad = standardise(X, tr)
        del X
    name = cfg.name or _default_name(cfg, header.name, layer)
    study_dir = Path(cfg.workdir) / PERMUTATION_DIR / name
    study_dir.mkdir(parents=True, exist_ok=True)
    true_block = aux_matrix(aux, age_mean, age_std)
    scores: dict[str, list[float]] = {c: [] for c in cfg.conditions}
    alphas: dict[str, list[float]] = {c: [] for c in cfg.conditions}
    total = cfg.trials * len(cfg.conditions)
    va = data.rows("Val")
    with threadpool_limits(limits=max(1, cfg.n_jobs)), tempfile.TemporaryDirectory() as scratch:
        for trial in range(cfg.trials):
            rng = np.random.default_rng([cfg.seed, trial])
            counts = np.zeros(len(data.ids))
            if cfg.head == "ridge":  # a deterministic fit: a bootstrap resample per trial
                counts[tr] = np.bincount(rng.integers(0, len(tr), len(tr)), minlength=len(tr))
            else:
                counts[tr] = 1.0
            counts[bad] = 0.0
            for cond in cfg.conditions:
                out_dir = Path(scratch) / f"{trial}-{cond}"
                if seqs is not None:  # the trial's auxiliary block on every frame
                    block = aux_block(cond, aux, true_block, data, rng, age_mean, age_std,
                                      cfg.eval_aux)
                    preds = _fit_torch_head(
                        cfg, Xs, data, counts > 0, cfg.seed + trial, out_dir,
                        seqs if block is None else SequencesWithClipVectors(seqs, block))
                else:
                    Xc = _inputs(cond, Xs, aux, true_block, data, rng, age_mean, age_std,
                                 cfg.eval_aux)
                    if cfg.head == "ridge":
                        preds, chosen = fit_ridge_task(Xc, data, counts, cfg.alphas)
                        alphas[cond].append(next(iter(chosen.values())))
                    else:
                        preds = _fit_torch_head(cfg, Xc, data, counts > 0, cfg.seed + trial,
                                                out_dir)
                s = score_task(task, {k: v[va] for k, v in data.truths.items()},
                               {k: v[va] for k, v in preds.items()})["score"]
                scores[cond].append(float(s))
                if progress:
                    progress(trial * len(cfg.conditions) + cfg.conditions.index(cond) + 1, total,
                             f"trial {trial} {cond}")
    tests = compare_conditions(scores, equal_var=not cfg.welch)
    k = int(true_block.shape[1])
    if seqs is not None:
        base, dim = "every frame", int(seqs.dim)
        input_text = (f"the {frames_field} frames ({dim}-d) of layer {layer}, each with the "
                      f"{k}-d auxiliary block appended ({dim + k}-d per frame)")
    else:
        base, dim = "features", int(Xs.shape[1])
        input_text = (f"layer {layer}'s {cfg.pooling}-pooled vector ({dim}-d) with the {k}-d "
                      f"auxiliary block concatenated ({dim + k}-d)")
    summary = {
        "name": name, "kind": "permutation",
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "feature_set": {"key": header.key, "spec": header.spec, "name": header.name,
                        "field": field},
        "task": task.name, "metric": task.headline, "metric_text": HEADLINE_TEXT[task.headline],
        "layer": layer, "pooling": None if seqs is not None else cfg.pooling,
        "frames_field": frames_field, "input": input_text, "input_dim": dim + k,
        "aux": list(cfg.aux),
        "countries": list(aux.countries), "trials": cfg.trials, "eval_aux": cfg.eval_aux,
        "conditions": list(cfg.conditions),
        "condition_meaning": {
            "none": "features only" if seqs is None else "frames only",
            "true": f"{base} + the clip's own auxiliary labels",
            "shuffled": f"{base} + country and age each permuted (independently) across the "
                        + ("Train clips" if cfg.eval_aux == "true" else "clips of each split"),
            "wrong": f"{base} + another country than the clip's own, age moved by "
                     f"{WRONG_AGE_SHIFT[0]:g}-{WRONG_AGE_SHIFT[1]:g} years (random sign), for "
                     + ("every Train clip" if cfg.eval_aux == "true" else "every clip")},
        "head": cfg.head, "head_text": head_text(cfg, frames_field), "recipe": cfg.recipe,
        "test": test_name(not cfg.welch),
        "trial_meaning": ("each trial: a bootstrap resample of Train (shared by the conditions "
                          "of the trial), fresh shuffles and wrong labels; alpha chosen on Val"
                          if cfg.head == "ridge" else
                          f"each trial: {cfg.head} trained anew with seed {cfg.seed} + trial, "
                          "fresh shuffles and wrong labels; its epoch chosen on Val"),
        "scores": scores,
        "alphas": alphas,
        "stats": {c: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)),
                      "min": float(np.min(v)), "max": float(np.max(v)), "n": len(v)}
                  for c, v in scores.items()},
        "tests": tests,
        "n_clips": {s: int(len(data.rows(s))) for s in ("Train", "Val", "Test")},
        "seconds": round(time.perf_counter() - t0, 3),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    write_study(summary, study_dir)
    return PermutationResult(study_dir, summary)


def aux_block(cond: str, aux: AuxLabels, true_block: np.ndarray, data: ProbeData,
              rng: np.random.Generator, age_mean: float, age_std: float, eval_aux: str
              ) -> np.ndarray | None:
    """The condition's auxiliary block, (n, k) float32 (None for ``none``); with ``eval_aux``
    ``true`` only the Train rows are manipulated. What a vector head gets concatenated to its
    vector and a sequence head to every frame."""
    if cond == "none":
        return None
    if cond == "true":
        return true_block
    train_only = eval_aux == "true"
    if cond == "shuffled":
        fake = shuffled_aux(aux, data.split, rng, ("Train",) if train_only else None)
    else:
        fake = wrong_aux(aux, rng, data.rows("Train") if train_only else None)
    return aux_matrix(fake, age_mean, age_std)


def _inputs(cond: str, Xs: np.ndarray, aux: AuxLabels, true_block: np.ndarray, data: ProbeData,  # noqa: N803
            rng: np.random.Generator, age_mean: float, age_std: float, eval_aux: str) -> np.ndarray:
    """Features plus the condition's auxiliary block (:func:`aux_block`), (n, d + k) float32."""
    block = aux_block(cond, aux, true_block, data, rng, age_mean, age_std, eval_aux)
    return Xs if block is None else np.concatenate([Xs, block], axis=1)


def _fit_torch_head(cfg: PermutationConfig, X: np.ndarray, data: ProbeData, train_ok: np.ndarray,  # noqa: N803
                    seed: int, out_dir: Path, sequences: SequenceSet | None = None
                    ) -> dict[str, np.ndarray]:
    """One trial's torch head on ``X`` (or, for a sequence head, on ``sequences``; Train rows
    with ``train_ok``; Val picks the epoch): target -> predictions of every row. Its files go
    to a scratch folder."""
    from heads.base import FitOptions
    from heads.dataset import Dataset, SequenceDataset
    from heads.registry import HEADS

    split = np.where(train_ok | (data.split != "Train"), data.split, "Unused")
    if sequences is not None:
        ds: Dataset = SequenceDataset(list(data.ids), split, np.zeros((len(data.ids), 0), np.float32),
                                      [data.task], {data.task.name: data.truths}, [],
                                      sequences=sequences)
    else:
        ds = Dataset(list(data.ids), split, X.astype(np.float32), [data.task],
                     {data.task.name: data.truths}, [])
    result = HEADS[cfg.head].fit(ds, [data.task], seed=seed, out_dir=out_dir,
                                 options=FitOptions(head_options=dict(cfg.head_options),
                                                    n_jobs=cfg.n_jobs))
    return result.predictions[data.task.name]


def _default_name(cfg: PermutationConfig, set_name: str, layer: int | None) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    task = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.task)
    return f"{stamp}-{task}-{set_name}-l{layer}-{'+'.join(cfg.aux)}"


def write_study(summary: dict[str, Any], study_dir: Path) -> dict[str, Path]:
    """permutation.json, scores.csv and tests.csv (atomic renames)."""
    paths = {"json": study_dir / "permutation.json", "scores": study_dir / "scores.csv",
             "tests": study_dir / "tests.csv"}
    rows = [{"trial": t, "condition": c, "score": s}
            for c, v in summary["scores"].items() for t, s in enumerate(v)]
    write_text_atomic(paths["json"], json.dumps(summary, indent=2, allow_nan=True))
    write_text_atomic(paths["scores"], pd.DataFrame(rows).to_csv(index=False, float_format="%.6f"))
    write_text_atomic(paths["tests"], pd.DataFrame(summary["tests"]).drop(columns=["test"])
                      .to_csv(index=False, float_format="%.6g"))
    return paths


def load_studies(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every readable WORKDIR/permutation/*/permutation.json (with ``dir`` added)."""
    return [{**d, "dir": str(folder)}
            for folder, d in read_results(Path(workdir) / PERMUTATION_DIR, "permutation.json")]

