"""A probe study: every (layer, pooling) of one SSL feature set, its folder on disk."""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.hints import extract_command
from data.tasks import parse_tasks, resolve_task
from extract.store import FeatureStore, SetHeader
from heads.base import FitOptions
from heads.classical import RIDGE_ALPHAS
from heads.dataset import Dataset
from heads.features import FeatureError, find_set
from heads.probe.data import (SPEAKER_SPLIT_RULE, SPEAKER_TASK, ProbeData, layer_fields,
                              load_probe_data, load_speaker_data, speaker_labels, standardise,
                              standardise_layers)
from heads.probe.summary import summarise_seeds
from heads.probe.ridge import best_index, fit_ridge_task, train_counts
from heads.probe.weighted_sum import WeightedSumConfig, fit_weighted_sum
from heads.rundir import jsonable, make_run_dir, read_results, run_dir
from heads.rundir import write_text as write_text_atomic
from heads.scoring import CI_LEVEL, HEADLINE_TEXT, Resamples

log = logging.getLogger(__name__)

PROBES_DIR = "probes"
Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``, called after each fitted (layer, pooling)."""


@dataclass(frozen=True)
class ProbeConfig:
    """Everything that defines a probe study (saved in probe.json).

    Attributes:
        workdir: the workdir (store + corpus reference).
        features: spec, name or key of an SSL feature set.
        task: one task (``avb-high``, ``avb-type``, ``exvo``, ``regress:COL``...).
        head: ``ridge`` (fast path) or any head ``train`` knows.
        poolings: poolings to probe (fields ``pooled_<pooling>``; empty = every stored one).
        layers: layers to probe (None = every stored layer).
        seeds: number of seeds 0..seeds-1 (see the module docstring for what a seed changes).
        n_boot: bootstrap resamples of Val clips for the CI.
        boot_seed: seed of the Val resamples (shared by every layer and pooling).
        alphas: ridge alphas (default: the ``ridge`` head's grid).
        weighted_sum: also train the weighted-sum head on all layers, per pooling.
        weighted: its training settings.
        name: folder name under probes/ (default: settings + time).
        n_jobs: CPU threads for BLAS / torch / heads (1 is fastest on a busy machine).
    """

    workdir: str
    features: str
    task: str
    head: str = "ridge"
    poolings: tuple[str, ...] = ()
    layers: tuple[int, ...] | None = None
    seeds: int = 1
    n_boot: int = 1000
    boot_seed: int = 0
    alphas: tuple[float, ...] = RIDGE_ALPHAS
    weighted_sum: bool = False
    weighted: WeightedSumConfig = field(default_factory=WeightedSumConfig)
    name: str | None = None
    n_jobs: int = 1


@dataclass
class ProbeResult:
    """A finished study: its folder and the content of probe.json."""

    probe_dir: Path
    summary: dict[str, Any]


def _fit_other_head(cfg: ProbeConfig, X: np.ndarray, data: ProbeData, seed: int,  # noqa: N803
                    tag: str, probe_dir: Path) -> dict[str, np.ndarray]:
    """Any head of ``train`` through the head protocol (classical or torch); its files go to
    ``<probe_dir>/fits/runs/<tag>/``."""
    from heads.registry import get_head  # the registry imports torch: only when probing

    head = get_head(cfg.head)
    ds = Dataset(list(data.ids), data.split, X, [data.task], {data.task.name: data.truths}, [])
    options = FitOptions(n_jobs=cfg.n_jobs, run_config=asdict(cfg))
    result = head.fit(ds, [data.task], seed=seed, out_dir=run_dir(probe_dir / "fits", tag),
                      options=options)
    return result.predictions[data.task.name]


def probe_one(cfg: ProbeConfig, Xs: np.ndarray, bad: np.ndarray, data: ProbeData,  # noqa: N803
              resamples: Resamples, *, tag: str, probe_dir: Path) -> dict[str, Any]:
    """All seeds of one (layer, pooling): fit, predict, summarise.

    Args:
        cfg: the study.
        Xs: features of every row of ``data`` standardised on Train (:func:`standardise`).
        bad: (n,) rows whose features were not finite.
        data: rows and labels.
        resamples: the shared Val resamples.
        tag: ``L<layer>-<pooling>`` (names the fit folder of non-ridge heads).
        probe_dir: the study's folder.
    """
    tr = data.rows("Train")
    if bad.any():
        log.warning("%s: %d clip(s) with NaN/Inf features: left out of Train, predicted from "
                    "the Train mean on Val/Test", tag, int(bad.sum()))
    seed_preds, alphas = [], []
    for seed in range(cfg.seeds):
        if cfg.head == "ridge":
            counts = train_counts(len(data.ids), tr, seed)
            counts[bad] = 0.0
            # seed 0 chooses alpha on Val; bootstrap seeds refit that alpha
            preds, chosen = fit_ridge_task(Xs, data, counts, cfg.alphas,
                                           fixed=alphas[0] if alphas else None)
            alphas.append(chosen)
        else:
            preds = _fit_other_head(cfg, Xs, data, seed, tag, probe_dir)
        seed_preds.append(preds)
    out = summarise_seeds(data, seed_preds, resamples)
    if alphas:
        out["alpha"] = {t: [a[t] for a in alphas] for t in alphas[0]}
    out["nonfinite_rows"] = int(bad.sum())
    return out


def _read_layers(store: FeatureStore, key: str, ids: Sequence[str],
                 items: Sequence[tuple[str, str, int]], prepare: Callable[[np.ndarray], Any]
                 ) -> Iterator[Any]:
    """``prepare(X)`` of each (pooling, field, layer index)'s (n, d) array, in order.

    A background thread reads and prepares the next item while the caller fits the current
    one (h5py and NumPy release the GIL for the heavy parts), so two cores are busy.
    """
    def read(item: tuple[str, str, int]) -> Any:
        X, _ = store.read(key, item[1], ids, index=item[2])
        return prepare(X)

    if not items:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, items[0])
        for i in range(len(items)):
            out = pending.result()
            if i + 1 < len(items):
                pending = pool.submit(read, items[i + 1])
            yield out


def default_probe_name(cfg: ProbeConfig, header: SetHeader) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    task = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.task)
    return f"{stamp}-{task}-{cfg.head}-{header.name}" + ("-wsum" if cfg.weighted_sum else "")


def _check_config(cfg: ProbeConfig) -> None:
    if cfg.seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {cfg.seeds}")
    if cfg.n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {cfg.n_boot}")
    if cfg.head != "ridge":
        from heads.registry import get_head

        get_head(cfg.head)  # raises for an unknown head, naming the known ones


def run_probe(cfg: ProbeConfig, *, progress: Progress | None = None) -> ProbeResult:
    """Probe every (layer, pooling) and write the study's folder.

    Args:
        cfg: the study.
        progress: called after each fitted (layer, pooling) and weighted-sum seed.

    Returns:
        The folder and the content of probe.json.

    Raises:
        FeatureError: the set, a pooling or a layer is not stored (names what is).
        TaskError: the corpus lacks the task's columns.
        ValueError: bad settings, several tasks, no Train/Val labels, unknown head.
    """
    from data.workdir import open_corpus
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    _check_config(cfg)
    store = FeatureStore(cfg.workdir)
    header = find_set(store, cfg.features, lambda h: layer_fields(h, cfg.poolings))
    stored_layers, fields = layer_fields(header, cfg.poolings)
    poolings = list(fields)
    layers = list(stored_layers) if cfg.layers is None else list(cfg.layers)
    missing = [l for l in layers if l not in stored_layers]
    if missing:
        raise FeatureError(f"layer(s) {missing} are not stored in {header.key}; stored layers: "
                           f"{stored_layers}. Extract them with `{extract_command(cfg.workdir, header.spec, layers=missing, poolings=poolings)}`.")
    tasks = parse_tasks(cfg.task)
    if len(tasks) != 1:
        raise ValueError(f"a probe studies one task, got {[t.name for t in tasks]}; run one "
                         f"probe per task")
    if tasks[0].name == SPEAKER_TASK:  # speaker identity: split within each speaker
        corpus = open_corpus(cfg.workdir)
        task = resolve_task(tasks[0], speaker_labels(corpus))
        data = load_speaker_data(store, header, corpus, task)
    else:
        corpus = open_corpus(cfg.workdir, need_split=True)
        task = resolve_task(tasks[0], corpus.labels)
        data = load_probe_data(store, header, corpus, task)
    name = cfg.name or default_probe_name(cfg, header)
    probe_dir = Path(cfg.workdir) / PROBES_DIR / name
    make_run_dir(probe_dir, result="probe.json")
    resamples = Resamples(len(data.rows("Val")), cfg.n_boot, cfg.boot_seed)
    items = [(p, fields[p], stored_layers.index(l)) for p in poolings for l in layers]
    total = len(items) + (cfg.seeds * len(poolings) if cfg.weighted_sum else 0)
    log.info("probing %s: %d layer(s) x %d pooling(s), %d seed(s), head %s, task %s; %d clips "
             "(%d Train, %d Val, %d Test)", header.key, len(layers), len(poolings), cfg.seeds,
             cfg.head, task.name, len(data.ids), len(data.rows("Train")), len(data.rows("Val")),
             len(data.rows("Test")))
    results: list[dict[str, Any]] = []
    weighted: dict[str, Any] = {}
    with threadpool_limits(limits=max(1, cfg.n_jobs)):
        train_rows = data.rows("Train")
        prepared = _read_layers(store, header.key, data.ids, items,
                                lambda X: standardise(X, train_rows))
        for i, (Xs, bad) in enumerate(prepared):
            pooling, _, pos = items[i]
            layer = stored_layers[pos]
            tag = f"L{layer}-{pooling}"
            rec = {"layer": layer, "pooling": pooling,
                   **probe_one(cfg, Xs, bad, data, resamples, tag=tag, probe_dir=probe_dir)}
            results.append(rec)
            log.debug("%s: Val %s = %.4f [%.4f, %.4f] (std %.4f)", tag, task.headline,
                     rec["score"], rec["ci"][0], rec["ci"][1], rec["std"])
            if progress:
                progress(len(results), total, tag)
        if cfg.weighted_sum:
            done = len(results)
            for pooling in poolings:
                weighted[pooling] = _weighted_study(store, header, fields[pooling], stored_layers,
                                                    layers, data, cfg, resamples)
                done += cfg.seeds
                if progress:
                    progress(done, total, f"weighted sum {pooling}")

    greater = task.headline != "mae"
    best = best_record(results, greater)
    summary = {
        "name": name, "kind": "probe",
        "config": jsonable(asdict(cfg)),
        "feature_set": {"key": header.key, "spec": header.spec, "name": header.name,
                        "model": header.config.get("model"), "fields": fields},
        "task": task.name, "metric": task.headline, "metric_text": HEADLINE_TEXT[task.headline],
        "greater_is_better": greater,
        "ci_method": f"{int(CI_LEVEL * 100)} % percentile bootstrap over Val clips of the "
                     f"seed-mean score ({cfg.n_boot} resamples, the same for every layer and "
                     f"pooling)",
        "seed_meaning": ("seed 0 fits on all of Train and chooses alpha on Val; seed k > 0 refits "
                         "that alpha on a bootstrap resample of Train (numpy default_rng(k))"
                         if cfg.head == "ridge" else "seeds change initialisation / randomness of "
                         "the head"),
        "std_meaning": "standard deviation of the Val score over seeds (ddof=1)",
        "n_clips": {s: int(len(data.rows(s))) for s in ("Train", "Val", "Test")},
        "excluded_missing_features": data.excluded_missing_features,
        **({"split_rule": SPEAKER_SPLIT_RULE} if task.name == SPEAKER_TASK else {}),
        "layers": layers, "poolings": poolings,
        "results": results, "best": best,
        "weighted_sum": weighted,
        "seconds": round(time.perf_counter() - t0, 3),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    write_probe(summary, probe_dir)
    log.info("best layer: %s (%s) with Val %s = %.4f; written to %s", best["layer"],
             best["pooling"], task.headline, best["score"], probe_dir)
    return ProbeResult(probe_dir, summary)


def _weighted_study(store: FeatureStore, header: SetHeader, field_name: str,
                    stored_layers: list[int], layers: list[int], data: ProbeData,
                    cfg: ProbeConfig, resamples: Resamples) -> dict[str, Any]:
    """All seeds of the weighted-sum head on one pooling's chosen layers."""
    X, _ = store.read(header.key, field_name, data.ids)  # (n, L_stored, d)
    if layers != stored_layers:
        X = X[:, [stored_layers.index(l) for l in layers]]
    X16, bad = standardise_layers(X, data.rows("Train"))
    del X
    seed_preds, weights, curves = [], [], []
    for seed in range(cfg.seeds):
        preds, w, curve = fit_weighted_sum(X16, data, seed, cfg.weighted, exclude=bad,
                                            n_jobs=cfg.n_jobs)
        seed_preds.append(preds)
        weights.append(w)
        curves.append(curve)
    out = summarise_seeds(data, seed_preds, resamples)
    wm = np.mean(weights, axis=0)
    out.update({
        "layers": layers,
        "weights": wm.tolist(),
        "weights_std": (np.std(weights, axis=0, ddof=1).tolist() if len(weights) > 1
                        else [0.0] * len(layers)),
        "weights_per_seed": [w.tolist() for w in weights],
        "epochs": [len(c["epoch"]) for c in curves],
        "curves": curves,
        "nonfinite_rows": int(bad.sum()),
    })
    return out


def best_record(results: list[dict[str, Any]], greater: bool) -> dict[str, Any]:
    """The best (layer, pooling) on Val, its Test score, and whether it is starred.

    ``separated`` (the star): the best's 95 % bootstrap CI does not overlap the CI of the
    next-best (layer, pooling) (``next``). Without it the best is only the highest point
    estimate among layers the data cannot tell apart.
    """
    scores = np.array([r["score"] for r in results], dtype=np.float64)
    i = best_index(scores, greater)
    r = results[i]
    out = {"layer": r["layer"], "pooling": r["pooling"], "score": r["score"], "ci": r["ci"],
           "std": r["std"], "selected_on": "Val"}
    if "test_score" in r:
        out["test_score"], out["test_std"] = r["test_score"], r["test_std"]
    others = [j for j in range(len(results)) if j != i]
    if not others:
        out["separated"] = False
        out["next"] = None
        return out
    rest = scores[others]
    j = others[best_index(rest, greater)]
    n = results[j]
    out["next"] = {"layer": n["layer"], "pooling": n["pooling"], "score": n["score"],
                   "ci": n["ci"]}
    low, high = r["ci"]
    n_low, n_high = n["ci"]
    out["separated"] = bool(low > n_high if greater else high < n_low)
    return out


def probe_table(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per layer; per pooling ``<pooling>_score``, ``_ci_low``, ``_ci_high``, ``_std``."""
    rows: dict[int, dict[str, Any]] = {}
    for r in summary["results"]:
        row = rows.setdefault(r["layer"], {"layer": r["layer"]})
        p = r["pooling"]
        row[f"{p}_score"] = r["score"]
        row[f"{p}_ci_low"], row[f"{p}_ci_high"] = r["ci"]
        row[f"{p}_std"] = r["std"]
    return pd.DataFrame([rows[k] for k in sorted(rows)])


def write_probe(summary: dict[str, Any], probe_dir: Path) -> dict[str, Path]:
    """probe.json, probe.csv and (weighted sum) layer_weights.csv; atomic renames."""
    paths = {"json": probe_dir / "probe.json", "csv": probe_dir / "probe.csv"}
    write_text_atomic(paths["json"], json.dumps(jsonable(summary), indent=2, allow_nan=True))
    write_text_atomic(paths["csv"], probe_table(summary).to_csv(index=False, float_format="%.6f"))
    if summary.get("weighted_sum"):
        rows = [{"pooling": p, "layer": l, "weight": w, "weight_std": s}
                for p, ws in summary["weighted_sum"].items()
                for l, w, s in zip(ws["layers"], ws["weights"], ws["weights_std"])]
        paths["weights"] = probe_dir / "layer_weights.csv"
        write_text_atomic(paths["weights"], pd.DataFrame(rows).to_csv(index=False, float_format="%.6f"))
    return paths


def load_probes(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every readable WORKDIR/probes/*/probe.json, oldest name first (with ``dir`` added)."""
    return [{**d, "dir": str(folder)}
            for folder, d in read_results(Path(workdir) / PROBES_DIR, "probe.json")]
