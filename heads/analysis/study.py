"""One analysis study: CKA between the layers of one or two SSL sets and CCA of each layer
against acoustic functionals, written to ``WORKDIR/analyses/<name>/``.

Clips: CKA uses the clips stored in every set involved (any split), a seeded random subsample
of at most ``max_clips`` (the Gram rows cost n^2). CCA fits on the corpus's Train clips and is
scored on its Val clips when both exist; otherwise on a seeded random 70 % / 30 % division of the
stored clips (recorded in analysis.json). The CIs are percentile bootstraps over the held-out
clips with the canonical directions held fixed (the same resamples for every layer).
"""
from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extract.store import FeatureStore, SetHeader
from heads.analysis.cca import choose_reg, correlations, fit_cca, weighted_correlations
from heads.analysis.cka import cka_matrix
from heads.analysis.descriptors import descriptor_groups
from heads.features import FeatureError, find_set
from heads.scoring.bootstrap import CI_LEVEL, Resamples, percentile_ci
from heads.rundir import jsonable, read_results, safe_name, write_json, write_text

log = logging.getLogger(__name__)

ANALYSES_DIR = "analyses"
FIT_FRACTION = 0.7
"""Share of clips that fit the CCA when the corpus has no Train/Val split."""

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class AnalyzeConfig:
    """What to analyse.

    Attributes:
        workdir: the workdir (store + corpus reference).
        features: an SSL set (spec, name or key).
        against: a second SSL set for cross-model CKA, or None.
        acoustic: an openSMILE functionals set for CCA, or None.
        pooling: which pooled field of the SSL sets (``mean``, ``last``, ...).
        max_clips: most clips in the CKA (seeded subsample).
        reg: CCA covariance shrinkage in [0, 1), or None: chosen per layer by 5-fold
            cross-validation on the fitting clips (:func:`heads.analysis.cca.choose_reg`).
        pca_dims: principal components of each layer kept before CCA (None: all).
        n_components: canonical pairs averaged into the "mean canonical correlation".
        n_boot: bootstrap resamples of the held-out clips.
        seed: seed of the subsample, the 70/30 division and the bootstrap.
        name: folder under ``WORKDIR/analyses`` (default: settings + time).
    """

    workdir: str
    features: str
    against: str | None = None
    acoustic: str | None = None
    pooling: str = "mean"
    max_clips: int = 2000
    reg: float | None = None
    pca_dims: int | None = 64
    n_components: int = 10
    n_boot: int = 1000
    seed: int = 0
    name: str | None = None

    def check(self) -> None:
        if self.max_clips < 3:
            raise ValueError(f"--max-clips must be at least 3, got {self.max_clips}")
        if self.reg is not None and not 0.0 <= self.reg < 1.0:
            raise ValueError(f"--cca-reg must be in [0, 1), got {self.reg}")
        if self.pca_dims is not None and self.pca_dims < 1:
            raise ValueError(f"--cca-pca must be at least 1 (or 0 for none), got {self.pca_dims}")
        if self.n_components < 1:
            raise ValueError(f"--cca-components must be at least 1, got {self.n_components}")
        if self.n_boot < 1:
            raise ValueError(f"--n-boot must be at least 1, got {self.n_boot}")


@dataclass
class AnalysisResult:
    folder: Path
    summary: dict[str, Any]


@dataclass(frozen=True)
class _LayeredSet:
    header: SetHeader
    field: str
    layers: list[int]


def _layered(store: FeatureStore, features: str, pooling: str) -> _LayeredSet:
    header = find_set(store, features)
    field = f"pooled_{pooling}"
    spec = header.fields.get(field)
    layers = None if spec is None else spec.attrs.get("layers")
    if layers is None:
        pooled = sorted(k[len("pooled_"):] for k in header.fields if k.startswith("pooled_"))
        if not pooled:
            raise FeatureError(f"set {header.key} has no layer-wise pooled field (fields: "
                               f"{sorted(header.fields)}); analyze needs an ssl: set")
        raise FeatureError(f"set {header.key} has no {pooling!r} pooling; stored poolings: "
                           f"{', '.join(pooled)} (pass --pooling {pooled[0]})")
    return _LayeredSet(header, field, list(layers))


def _acoustic(store: FeatureStore, features: str) -> tuple[SetHeader, list[str]]:
    header = find_set(store, features)
    spec = header.fields.get("functionals")
    if spec is None:
        raise FeatureError(f"set {header.key} has no functionals field; --acoustic needs an "
                           f"openSMILE functionals set, e.g. opensmile:eGeMAPSv02")
    return header, list(spec.attrs.get("columns") or [f"f{i}" for i in range(spec.shape[0])])


def _stored_ids(store: FeatureStore, keys: Sequence[str]) -> list[str]:
    common: set[str] | None = None
    for key in keys:
        done, _ = store.status(key)
        common = set(done) if common is None else common & set(done)
    return sorted(common or ())


def _subsample(ids: list[str], limit: int, seed: int) -> list[str]:
    if len(ids) <= limit:
        return ids
    rng = np.random.default_rng(seed)
    return sorted(np.asarray(ids, dtype=object)[rng.choice(len(ids), limit, replace=False)])


def _read_layer(store: FeatureStore, s: _LayeredSet, ids: Sequence[str], position: int
                ) -> np.ndarray:
    x, present = store.read(s.header.key, s.field, ids, index=position)
    assert present.all(), "ids were chosen among the stored rows"
    return x.reshape(len(ids), -1)


def _cka(store: FeatureStore, sets: list[_LayeredSet], cfg: AnalyzeConfig,
         progress: Progress | None) -> dict[str, Any]:
    stored = _stored_ids(store, [s.header.key for s in sets])
    if len(stored) < 3:
        raise ValueError(f"CKA needs at least 3 clips stored in every set; {len(stored)} are")
    ids = _subsample(stored, cfg.max_clips, cfg.seed)
    mats = []
    for s in sets:
        for pos, _ in enumerate(s.layers):
            mats.append(_read_layer(store, s, ids, pos))
        if progress:
            progress(len(mats), sum(len(t.layers) for t in sets), f"read {s.header.key}")
    full = cka_matrix(mats)
    out: dict[str, Any] = {"n_clips": len(ids), "n_stored": len(stored),
                           "clips": ("every stored clip" if len(ids) == len(stored) else
                                     f"seeded random subsample (seed {cfg.seed}) of "
                                     f"{len(stored)} clips stored in every set"),
                           "within": {}, "between": None}
    offsets = np.cumsum([0] + [len(s.layers) for s in sets])
    for s, a, b in zip(sets, offsets[:-1], offsets[1:]):
        out["within"][s.header.key] = full[a:b, a:b].tolist()
    if len(sets) == 2:
        out["between"] = {"rows": sets[0].header.key, "cols": sets[1].header.key,
                          "values": full[offsets[0]:offsets[1], offsets[1]:offsets[2]].tolist()}
    return out


def _cca_division(corpus: Any, ids: list[str], seed: int) -> tuple[list[str], list[str], str]:
    """(fit ids, held-out ids, how they were chosen)."""
    split = None
    if corpus is not None and "split" in corpus.clips.columns:
        split = corpus.clips["split"].reindex(ids)
    if split is not None:
        fit = [i for i, s in zip(ids, split) if s == "Train"]
        held = [i for i, s in zip(ids, split) if s == "Val"]
        if len(fit) >= 3 and len(held) >= 3:
            return fit, held, "fitted on Train, scored on Val"
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    cut = int(round(FIT_FRACTION * len(ids)))
    fit = sorted(ids[i] for i in order[:cut])
    held = sorted(ids[i] for i in order[cut:])
    if len(fit) < 3 or len(held) < 3:
        raise ValueError(f"CCA needs at least 3 fitting and 3 held-out clips; {len(ids)} clips "
                         f"are stored in both sets")
    return fit, held, (f"no Train/Val split: fitted on a seeded random {FIT_FRACTION:.0%} of "
                       f"the clips (seed {seed}), scored on the rest")


def _interval(values: np.ndarray) -> list[float]:
    return list(percentile_ci(values))


def _cca(store: FeatureStore, s: _LayeredSet, acoustic: SetHeader, columns: list[str],
         corpus: Any, cfg: AnalyzeConfig, progress: Progress | None,
         done: int, total: int) -> dict[str, Any]:
    ids = _stored_ids(store, [s.header.key, acoustic.key])
    fit_ids, held_ids, how = _cca_division(corpus, ids, cfg.seed)
    y_fit, _ = store.read(acoustic.key, "functionals", fit_ids)
    y_held, _ = store.read(acoustic.key, "functionals", held_ids)
    groups = descriptor_groups(columns)
    if sum(len(v) for v in groups.values()) != len(columns):
        groups = {}  # a grouping only where every column has its group (eGeMAPS)
    resamples = Resamples(len(held_ids), cfg.n_boot, cfg.seed)
    rows = []
    for pos, layer in enumerate(s.layers):
        x = _read_layer(store, s, [*fit_ids, *held_ids], pos)  # one read of the layer
        x_fit, x_held = x[:len(fit_ids)], x[len(fit_ids):]
        reg = cfg.reg if cfg.reg is not None else choose_reg(
            x_fit, y_fit, pca_dims=cfg.pca_dims, n_components=cfg.n_components, seed=cfg.seed)
        fit = fit_cca(x_fit, y_fit, reg=reg, pca_dims=cfg.pca_dims,
                      n_components=cfg.n_components)
        u, v = fit.transform(x_held, y_held)
        held = correlations(u, v)
        boot = np.concatenate([weighted_correlations(w, u, v) for w in resamples.chunks()])
        with np.errstate(all="ignore"):
            boot_mean = np.nanmean(boot, axis=1)
        row: dict[str, Any] = {
            "layer": layer, "mean_cc": float(np.nanmean(held)), "ci": _interval(boot_mean),
            "first_cc": float(held[0]), "first_ci": _interval(boot[:, 0]), "reg": reg,
            "held_out_cc": held.tolist(), "fit_cc": fit.fit_corr.tolist(), "groups": {}}
        for group, cols in groups.items():
            g_reg = cfg.reg if cfg.reg is not None else choose_reg(
                x_fit, y_fit[:, cols], pca_dims=cfg.pca_dims, n_components=1, seed=cfg.seed)
            g = fit_cca(x_fit, y_fit[:, cols], reg=g_reg, pca_dims=cfg.pca_dims, n_components=1)
            gu, gv = g.transform(x_held, y_held[:, cols])
            row["groups"][group] = float(correlations(gu, gv)[0])
        if row["groups"]:
            row["best_group"] = max(row["groups"], key=lambda k: row["groups"][k])
        rows.append(row)
        if progress:
            progress(done + pos + 1, total, f"CCA layer {layer}")
    return {"set": s.header.key, "acoustic": acoustic.key, "division": how,
            "n_fit": len(fit_ids), "n_held_out": len(held_ids),
            "groups": {g: [columns[i] for i in cols] for g, cols in groups.items()},
            "per_layer": rows, **_best(rows)}


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The layer of highest held-out mean canonical correlation, and whether its CI lies
    wholly above the runner-up's (only then is it called the best layer in print)."""
    ranked = sorted((r for r in rows if np.isfinite(r["mean_cc"])), key=lambda r: -r["mean_cc"])
    if not ranked:
        return {"best_layer": None, "best_separated": False}
    separated = len(ranked) == 1 or ranked[0]["ci"][0] > ranked[1]["ci"][1]
    return {"best_layer": ranked[0]["layer"], "best_separated": bool(separated)}


def run_analysis(cfg: AnalyzeConfig, *, progress: Progress | None = None) -> AnalysisResult:
    """Run one study and write ``analysis.json`` (+ csv tables) under ``WORKDIR/analyses/``.

    Raises:
        FeatureError: a set is missing or has no layer-wise pooled field.
        ValueError: bad settings or too few clips.
    """
    from data.workdir import open_corpus

    cfg.check()
    started = time.perf_counter()
    store = FeatureStore(cfg.workdir)
    sets = [_layered(store, cfg.features, cfg.pooling)]
    if cfg.against:
        sets.append(_layered(store, cfg.against, cfg.pooling))
    acoustic = _acoustic(store, cfg.acoustic) if cfg.acoustic else None
    try:
        corpus = open_corpus(cfg.workdir)
    except FileNotFoundError:
        corpus = None
    total = sum(len(s.layers) for s in sets) * (2 if acoustic else 1)
    summary: dict[str, Any] = {
        "config": asdict(cfg), "pooling": cfg.pooling, "ci_level": CI_LEVEL,
        "sets": [{"key": s.header.key, "spec": s.header.spec, "layers": s.layers} for s in sets],
        "cka": _cka(store, sets, cfg, progress), "cca": []}
    if acoustic is not None:
        header, columns = acoustic
        done = sum(len(s.layers) for s in sets)
        for s in sets:
            summary["cca"].append(_cca(store, s, header, columns, corpus, cfg, progress,
                                       done, total))
            done += len(s.layers)
    summary["seconds"] = time.perf_counter() - started
    name = cfg.name or "-".join(
        [_dt.datetime.now().strftime("%Y%m%d-%H%M%S")]
        + [safe_name(s.header.name) for s in sets] + ([safe_name(acoustic[0].name)] if acoustic else []))
    folder = Path(cfg.workdir) / ANALYSES_DIR / safe_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    write_analysis(summary, folder)
    log.debug("analysis written to %s in %.1f s", folder, summary["seconds"])
    return AnalysisResult(folder, summary)


def write_analysis(summary: dict[str, Any], folder: Path) -> None:
    """``analysis.json`` and, per CCA, ``cca_<set>.csv`` (one row per layer)."""
    write_json(folder / "analysis.json", jsonable(summary))
    for c in summary["cca"]:
        groups = list(c["groups"])
        lines = [",".join(["layer", "mean_cc", "ci_low", "ci_high", "first_cc"] + groups)]
        for r in c["per_layer"]:
            lines.append(",".join([str(r["layer"])] + [f"{v:.6f}" for v in
                                  (r["mean_cc"], *r["ci"], r["first_cc"])]
                                  + [f"{r['groups'][g]:.6f}" for g in groups]))
        write_text(folder / f"cca_{safe_name(c['set'])}.csv", "\n".join(lines) + "\n")


def load_analyses(workdir: str | Path) -> list[dict[str, Any]]:
    """Every ``analysis.json`` of a workdir, oldest first, each with its ``folder``."""
    return [{**d, "folder": str(folder)}
            for folder, d in read_results(Path(workdir) / ANALYSES_DIR, "analysis.json")]
