"""Gather everything a workdir holds into ``report.md``, ``report.html`` and ``report.json``.

Sources, all written by other commands (this module only formats; scores come from ``heads``):

* ``runs/<run>/metrics.json`` (+ ``config.json``, ``curves_seed<k>.json`` of torch heads);
* ``probes/<name>/probe.json`` (``probe``);
* ``permutation/<name>/permutation.json`` (``permutation``);
* ``analyses/<name>/analysis.json`` (``analyze``);
* ``runs/<name>/cv.json`` and ``finetuned/<name>/cv.json`` (``--cv`` studies, :mod:`reports.crossval`);
* the recipe files of runs made from a recipe (their fidelity to the paper, :mod:`reports.fidelity`);
* the feature store's set headers (provenance: model, versions, device, throughput) and its
  failed clips.

Published numbers are shown beside ours, labelled as published, with their source
(:mod:`reports.published`). Figures are PNG files in ``WORKDIR/report_files/``: linked from
report.md, embedded (base64) in report.html, which is therefore one self-contained file.

One concept, at length: the report of a workdir (what it gathers and the sections on
results, curves and the store); the study sections are in :mod:`reports.studies`, the shared
pieces in :mod:`reports.blocks`.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports import plots
from reports.auxiliary import auxiliary_blocks
from reports.blocks import Figures, figure, fmt, is_untrained_spec, safe_name
from reports.crossval import crossval_blocks
from reports.crossval import load_studies as load_cv_studies
from reports.fidelity import fidelity_blocks, load_fidelity, run_recipes
from reports.html import render_html
from reports.html import render_markdown as render_blocks_markdown
from reports.published import published_for
from reports.studies import analysis_blocks, permutation_blocks, probe_blocks

log = logging.getLogger(__name__)

FILES_DIR = "report_files"
MAX_FAILED_LISTED = 200
"""Failed clips listed per feature set (the count is always given)."""
MAX_CONFUSIONS_PER_TASK = 6
"""Confusion matrices drawn per task and target (best runs first)."""

NOTE = ("Scores are on the Val split unless marked Test; CCC is the population form "
        "(= `audmetric.concordance_cc`); UAR is macro-averaged recall; MAE is in the label's "
        "unit (lower is better); intervals are 95 % percentile bootstrap over Val clips.")
PUBLISHED_NOTE = ("Rows marked *published* are the papers' numbers on their own data (the "
                  "HUME-VB recordings of the A-VB 2022 and ExVo 2022 challenges), one row per "
                  "system with its Val and Test numbers; they are shown for reference and not "
                  "computed here.")
LAYOUT_TEXT = {"avb": "A-VB 2022 layout", "exvo": "ExVo 2022 layout", "iemocap": "IEMOCAP release",
               "csv": "a CSV table of files and labels", "audformat": "an audformat database",
               "hf": "a Hugging Face dataset (save_to_disk)"}
MAX_RECALL_RUNS = 6
"""Runs shown side by side in a per-class recall table (best first)."""


def corpus_info(workdir: str | os.PathLike) -> dict[str, Any]:
    """What the workdir's corpus is, from ``WORKDIR/corpus.json``: root, layout, its own name
    and version (audformat meta), and whether it is a generated demo corpus."""
    from data.demo import synthetic_info
    from data.workdir import load_corpus_ref

    try:
        ref = load_corpus_ref(workdir)
    except ValueError as exc:
        return {"known": False, "problem": str(exc)}
    if ref is None:
        return {"known": False, "problem": f"{workdir} has no corpus.json"}
    meta = ref.get("meta") or {}
    name = meta.get("name") or Path(ref["root"]).name
    if meta.get("version"):
        name = f"{name} {meta['version']}"
    synthetic = synthetic_info(ref["root"])
    if synthetic:
        name = f"a SYNTHETIC demo corpus ({name})"
    return {"known": True, "root": ref["root"], "layout": ref["layout"], "labels": ref.get("labels"),
            "name": name, "meta": meta, "synthetic": synthetic}


@dataclass
class RunSummary:
    name: str
    path: Path
    metrics: dict[str, Any]
    config: dict[str, Any]


def load_runs(workdir: str | os.PathLike) -> list[RunSummary]:
    """Every run under WORKDIR/runs with a readable metrics.json, in name order, then every
    fine-tuning run under WORKDIR/finetuned (named ``finetuned/<run>``; its head is
    ``finetune``, its features the base model, fine-tuned)."""
    runs: list[RunSummary] = []
    for folder in ("runs", "finetuned"):
        base = Path(workdir) / folder
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            m = d / "metrics.json"
            if not m.exists():
                continue
            try:
                metrics = json.loads(m.read_text())
                config = json.loads((d / "config.json").read_text()) if (d / "config.json").exists() else {}
            except ValueError as exc:
                log.warning("skipping run %s: unreadable metrics (%s)", d, exc)
                continue
            if folder == "finetuned":
                if not isinstance(metrics.get("tasks"), dict):
                    continue
                metrics = {"head": "finetune",
                           "features": [{"spec": f"ssl:{metrics.get('base_model', '?')} "
                                                 f"(fine-tuned end to end)"}], **metrics}
            runs.append(RunSummary(d.name if folder == "runs" else f"{folder}/{d.name}", d,
                                   metrics, config))
    return runs


def _features_text(metrics: dict[str, Any]) -> str:
    parts = []
    for f in metrics.get("features", []):
        s = f.get("spec", f.get("key", "?"))
        if is_untrained_spec(s):
            s += " [UNTRAINED random weights: not a result]"
        if f.get("layer") is not None:
            s += f" L{f['layer']}"
        if f.get("field") and f["field"].startswith("pooled_"):
            s += f" {f['field'][7:]}"
        parts.append(s)
    return " + ".join(parts)


def results_rows(runs: list[RunSummary]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        for task, entry in r.metrics.get("tasks", {}).items():
            val = entry.get("val", {})
            rows.append({"run": r.name, "task": task, "head": r.metrics.get("head"),
                         "features": _features_text(r.metrics), "metric": val.get("metric"),
                         "val": val.get("score"), "val_std": val.get("score_std"),
                         "ci": val.get("ci"), "seeds": len(val.get("seed_scores", [])) or 1,
                         "test": entry.get("test", {}).get("score"), "n_val": val.get("n"),
                         "test_reason": _test_reason(r.metrics, entry)})
    return rows


def _test_reason(metrics: dict[str, Any], entry: dict[str, Any]) -> str | None:
    """Why a run has no Test score (None when it has one)."""
    if entry.get("test", {}).get("score") is not None:
        return None
    n_test = (metrics.get("n_clips") or {}).get("Test")
    if n_test == 0:
        return "no Test split"
    if n_test:
        return "no Test labels"
    return "not scored"


def store_rows(workdir: Path) -> list[dict[str, Any]]:
    """Provenance of each feature set (model, versions, device, throughput) and failures."""
    from extract.store import FeatureStore

    store = FeatureStore(workdir)
    out = []
    try:
        infos = store.sets()
    except Exception as exc:  # a report must still be written
        log.warning("cannot read the store of %s: %s", workdir, exc)
        return out
    for info in infos:
        _, failed = store.status(info.key)
        prov = info.header.provenance
        out.append({"key": info.key, "spec": info.header.spec, "rows": info.n_rows,
                    "failed": {c: r for c, (_, r) in failed.items()},
                    "config": info.header.config,
                    "provenance": {k: v for k, v in prov.items() if k != "runs"}})
    return out


# --------------------------------------------------------------------------------------------
# training curves of torch heads
# --------------------------------------------------------------------------------------------

_EPOCH_KEYS = ("epoch", "epochs")
_SERIES_KEYS = {
    "train_loss": ("train_loss", "train_losses", "loss", "losses", "train"),
    "val_score": ("val_score", "val_scores", "val", "val_metric", "val_metrics", "score"),
    "task_weights": ("task_weights", "weights", "weight", "loss_weights"),
}


def _series(value: Any, names: list[str] | None, default: str) -> dict[str, list[float]]:
    """A curve value as name -> per-epoch list.

    Accepts a list of numbers, a dict of name -> list, a list of per-epoch dicts, or a list of
    per-epoch lists (named by ``names`` when given).
    """
    if isinstance(value, dict):
        return {str(k): [_num(x) for x in v] for k, v in value.items() if isinstance(v, list)}
    if not isinstance(value, list) or not value:
        return {}
    if all(isinstance(x, dict) for x in value):
        keys: list[str] = []
        for x in value:
            keys += [k for k in x if k not in keys]
        return {str(k): [_num(x.get(k)) for x in value] for k in keys}
    if all(isinstance(x, (list, tuple)) for x in value):
        width = max(len(x) for x in value)
        labels = names if names and len(names) == width else [f"{default} {i}" for i in range(width)]
        return {labels[i]: [_num(x[i]) if i < len(x) else float("nan") for x in value]
                for i in range(width)}
    return {default: [_num(x) for x in value]}


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def normalise_curve(obj: Any) -> dict[str, Any]:
    """A ``curves_seed<k>.json`` as ``{"epoch": [...], "train_loss": {name: [...]},
    "val_score": {name: [...]}, "task_weights": {name: [...]}}``.

    Tolerant of the shapes a training loop may write: a dict of series (lists, dicts of lists,
    lists of per-epoch dicts or lists), or a list of per-epoch records.
    """
    if isinstance(obj, list):  # per-epoch records
        recs = [r for r in obj if isinstance(r, dict)]
        obj = {k: [r.get(k) for r in recs] for k in dict.fromkeys(k for r in recs for k in r)}
    if not isinstance(obj, dict):
        return {"epoch": [], "train_loss": {}, "val_score": {}, "task_weights": {}}
    names = obj.get("tasks") if isinstance(obj.get("tasks"), list) else None
    out: dict[str, Any] = {}
    for kind, keys in _SERIES_KEYS.items():
        key = next((k for k in keys if k in obj), None)
        out[kind] = _series(obj[key], names, kind.replace("_", " ")) if key else {}
    epoch_key = next((k for k in _EPOCH_KEYS if isinstance(obj.get(k), list)), None)
    n = max([len(v) for s in out.values() for v in s.values()] or [0])
    out["epoch"] = [_num(e) for e in obj[epoch_key]] if epoch_key else list(range(n))
    return out


def load_curves(run_dir: Path) -> list[dict[str, Any]]:
    """Normalised curves of every ``curves_seed<k>.json`` (or ``curves_seed<k>_<group>.json``,
    one per separately trained group) of a run, by seed then group."""
    found = []
    for p in run_dir.glob("curves_seed*.json"):
        m = re.match(r"curves_seed(\d+)(?:_(.+))?\.json$", p.name)
        if not m:
            continue
        try:
            found.append(((int(m.group(1)), m.group(2) or ""),
                          normalise_curve(json.loads(p.read_text()))))
        except ValueError as exc:
            log.warning("skipping %s: unreadable (%s)", p, exc)
    return [c for _, c in sorted(found, key=lambda t: t[0])]


# --------------------------------------------------------------------------------------------
# content
# --------------------------------------------------------------------------------------------


def build_report(workdir: str | os.PathLike) -> dict[str, Any]:
    """The report's content as plain data (also written as report.json)."""
    from heads.analysis.study import load_analyses
    from heads.permutation import load_studies
    from heads.probe import load_probes

    wd = Path(workdir)
    runs = load_runs(wd)
    rows = results_rows(runs)
    tasks = sorted({r["task"] for r in rows})
    published = {t: [p.__dict__ for p in published_for(t)] for t in tasks}
    run_dicts = [{"name": r.name, "metrics": r.metrics, "config": r.config,
                  "curves": load_curves(r.path)} for r in runs]
    return {"workdir": str(wd), "generated": _dt.datetime.now().isoformat(timespec="seconds"),
            "corpus": corpus_info(wd), "note": NOTE, "results": rows, "published": published,
            "feature_sets": store_rows(wd), "runs": run_dicts,
            "fidelity": load_fidelity(run_recipes(run_dicts).values()),
            "probes": load_probes(wd), "permutation": load_studies(wd),
            "analyses": load_analyses(wd), "crossval": load_cv_studies(wd),
            "crossval_published": {t: [p.__dict__ for p in published_for(t)]
                                   for t in {s.get("task") for s in load_cv_studies(wd)} if t}}


def report_blocks(report: dict[str, Any], figures: Figures) -> list[dict[str, Any]]:
    """The report as blocks (see :mod:`reports.html`), drawing its figures on the way."""
    corpus = report.get("corpus") or {"known": False}
    b: list[dict[str, Any]] = [
        {"kind": "h", "level": 1, "text": f"Results on {corpus['name']}" if corpus.get("known")
         else f"Results for `{report['workdir']}`"}]
    b += _corpus_blocks(corpus, report["workdir"])
    b.append({"kind": "p", "class": "meta", "text": f"Generated {report['generated']}. {report['note']}"})
    rows = report["results"]
    if not rows and not report.get("crossval"):
        b.append({"kind": "p", "text": "No runs yet: `run_pipeline.py train --workdir ...` writes them."})
    runs_by_name = {r["name"]: r for r in report["runs"]}
    synthetic = bool(corpus.get("synthetic"))
    for task in sorted({r["task"] for r in rows}):
        b += _task_blocks(task, [r for r in rows if r["task"] == task],
                          report["published"].get(task, []), runs_by_name, figures,
                          synthetic=synthetic, fidelity=report.get("fidelity", {}))
    b += crossval_blocks(report.get("crossval", []), report.get("crossval_published", {}))
    b += _curve_blocks(report["runs"], figures)
    b += probe_blocks(report["probes"], figures)
    b += permutation_blocks(report["permutation"], figures)
    b += analysis_blocks(report.get("analyses", []), figures)
    b += _store_blocks(report["feature_sets"])
    return b


def _corpus_blocks(corpus: dict[str, Any], workdir: str) -> list[dict[str, Any]]:
    """Which corpus the numbers are on, and an unmissable banner for a synthetic one."""
    if not corpus.get("known"):
        return [{"kind": "p", "text": f"Workdir `{workdir}`; its corpus is not recorded "
                                      f"({corpus.get('problem')})."}]
    layout = LAYOUT_TEXT.get(corpus["layout"], corpus["layout"])
    text = f"Corpus `{corpus['root']}` ({layout}"
    if corpus.get("labels"):
        text += f", labels `{corpus['labels']}`"
    meta = {k: v for k, v in (corpus.get("meta") or {}).items() if k not in ("name", "version")}
    if meta:
        text += "; " + ", ".join(f"{k}: {v}" for k, v in sorted(meta.items()))
    b: list[dict[str, Any]] = []
    syn = corpus.get("synthetic")
    if syn:
        b.append({"kind": "banner", "text":
                  "**SYNTHETIC DEMO CORPUS: these numbers are not results.** The clips were "
                  f"generated by `{syn.get('generator', 'data.demo')}` ({syn.get('what', 'synthetic sound')}; "
                  f"seed {syn.get('seed', '?')}, {syn.get('n_clips', '?')} clips). Scores only show "
                  "that the pipeline works; they cannot be compared with numbers published on "
                  "real recordings."})
    b.append({"kind": "p", "text": text + f"), workdir `{workdir}`."})
    return b


def merge_published(published: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per published system and metric, with its Val and Test numbers (either may be
    absent) and the sources of each."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for p in published:
        m = merged.setdefault((p["system"], p["metric"]), {
            "system": p["system"], "metric": p["metric"], "val": None, "test": None, "sources": {}})
        m[p["split"]] = p["score"]
        m["sources"][p["split"]] = p["source"]
    out = []
    for m in merged.values():
        srcs = m["sources"]
        m["source"] = (next(iter(srcs.values())) if len(set(srcs.values())) == 1 else
                       "; ".join(f"{k}: {v}" for k, v in srcs.items()))
        out.append(m)
    return out


def _split_per_column(entry: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(CCC per label column, MAE per target) of a task entry's Val scores: MAE targets (exvo's
    Age) never sit among CCC bars."""
    val = entry.get("val") or {}
    targets = val.get("targets") or {}
    if not targets:
        return (dict(val.get("per_column") or {}) if val.get("metric") == "ccc" else {}), {}
    ccc: dict[str, float] = {}
    mae: dict[str, float] = {}
    for tname, t in targets.items():
        if t.get("metric") == "ccc":
            ccc.update(t.get("per_column") or {})
        elif t.get("metric") == "mae":
            mae[tname] = t.get("score")
    return ccc, mae


def _task_blocks(task: str, rows: list[dict[str, Any]], published: list[dict[str, Any]],
                 runs: dict[str, Any], figures: Figures, *, synthetic: bool = False,
                 fidelity: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    b: list[dict[str, Any]] = [{"kind": "h", "level": 2, "text": task, "id": f"task-{safe_name(task)}"}]
    table_rows, classes = [], []
    for r in rows:
        ci = r["ci"] or [None, None]
        val = fmt(r["val"]) + (f" ± {fmt(r['val_std'])}" if r.get("val_std") else "")
        test = fmt(r["test"]) if r["test"] is not None else (r.get("test_reason") or "-")
        table_rows.append([r["run"], r["head"] or "", r["features"], r["metric"] or "", val,
                           f"[{fmt(ci[0])}, {fmt(ci[1])}]", str(r["seeds"]), test])
        classes.append(None)
    pubs = merge_published(published)
    for p in pubs:
        table_rows.append([f"*published*: {p['system']}", "", f"({p['source']})", p["metric"],
                           fmt(p["val"]) if p["val"] is not None else "not published", "", "",
                           fmt(p["test"]) if p["test"] is not None else "not published"])
        classes.append("published")
    b.append({"kind": "table",
              "headers": ["run", "head", "features", "metric", "Val", "95 % CI", "seeds", "Test"],
              "rows": table_rows, "row_class": classes,
              "align": ["l", "l", "l", "l", "r", "r", "r", "r"]})
    if pubs:
        b.append({"kind": "p", "class": "meta", "text": PUBLISHED_NOTE + (
            " **This corpus is synthetic: our rows cannot be compared with them.**"
            if synthetic else "")})
    b += fidelity_blocks(dict.fromkeys(r["run"] for r in rows), runs, fidelity or {})
    b += auxiliary_blocks(dict.fromkeys(r["run"] for r in rows), runs)

    entries = [(name, runs[name]["metrics"]["tasks"][task]) for name in dict.fromkeys(r["run"] for r in rows)
               if name in runs and task in runs[name]["metrics"].get("tasks", {})]
    split = {name: _split_per_column(e) for name, e in entries}
    per_col = {name: ccc for name, (ccc, _) in split.items() if ccc}
    per_mae = {name: mae for name, (_, mae) in split.items() if mae}
    if per_col:
        for name, cols in per_col.items():
            if len(cols) <= 12:
                b.append({"kind": "p", "text": f"Per column ({name}): " + ", ".join(
                    f"{c} {fmt(v, 3)}" for c, v in cols.items())})
        path = figures.draw(f"{task}-per-column", plots.plot_per_column, per_col,
                            title=f"{task}: Val CCC per label column")
        b += figure(path, f"{task}: Val CCC of each label column, one bar per run.")
    if per_mae:
        path = figures.draw(f"{task}-mae", plots.plot_per_column, per_mae,
                            title=f"{task}: Val MAE (lower is better)", metric="MAE")
        b += figure(path, f"{task}: Val MAE of each MAE-scored target (in the label's unit; lower "
                        f"is better), one bar per run; kept apart from the CCC bars.")
    b += _classification_blocks(task, entries)
    # confusion matrices of classification targets, best runs first
    by_target: dict[str, list[tuple[float, str, dict[str, Any]]]] = {}
    for name, e in entries:
        for tname, t in (e["val"].get("targets") or {}).items():
            if t.get("confusion") and t.get("classes"):
                by_target.setdefault(tname, []).append((_num(t.get("score")), name, t))
    for tname, items in by_target.items():
        items.sort(key=lambda x: -x[0] if math.isfinite(x[0]) else math.inf)
        for score, name, t in items[:MAX_CONFUSIONS_PER_TASK]:
            path = figures.draw(f"{task}-{tname}-confusion-{name}", plots.plot_confusion,
                                t["confusion"], t["classes"],
                                title=f"{name}\n{tname}: UAR {fmt(score)}")
            b += figure(path, f"{task} / {tname}: confusion matrix of run `{name}` on Val "
                            f"(colour: share of the true class; numbers: clips).")
        if len(items) > MAX_CONFUSIONS_PER_TASK:
            b.append({"kind": "p", "text": f"({len(items) - MAX_CONFUSIONS_PER_TASK} more runs "
                                           f"of {tname} not drawn.)"})
    return b


EXTRA_CLASSIFICATION = (("wa", "WA"), ("macro_f1", "macro-F1"))


def _recall_map(t: dict[str, Any]) -> dict[str, float]:
    """``per_class_recall`` as class -> recall (a dict, or a list aligned with ``classes``)."""
    pcr = t.get("per_class_recall")
    if isinstance(pcr, dict):
        return {str(k): v for k, v in pcr.items()}
    if isinstance(pcr, list) and len(pcr) == len(t.get("classes") or []):
        return dict(zip((str(c) for c in t["classes"]), pcr))
    return {}


def _classification_blocks(task: str, entries: list[tuple[str, dict[str, Any]]]
                           ) -> list[dict[str, Any]]:
    """WA, macro-F1 and per-class recall, where a run's result JSON has them (``wa``,
    ``macro_f1``, ``per_class_recall``, on a target or on the task's Val entry)."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for name, e in entries:
        val = e.get("val") or {}
        targets = val.get("targets") or {}
        scopes = list(targets.items()) or [(task, val)]
        for tname, t in scopes:
            if any(k in t for k, _ in EXTRA_CLASSIFICATION) or "per_class_recall" in t:
                found.append((name, tname, t))
    if not found:
        return []
    b: list[dict[str, Any]] = [{"kind": "h", "level": 3, "text": f"{task}: classification metrics"}]
    b.append({"kind": "table",
              "headers": ["run", "target", "headline", *[h for _, h in EXTRA_CLASSIFICATION]],
              "rows": [[name, tname, f"{t.get('metric', '')} {fmt(t.get('score'))}".strip(),
                        *[fmt(t.get(k)) if k in t else "not in result" for k, _ in EXTRA_CLASSIFICATION]]
                       for name, tname, t in found],
              "align": ["k", "l", "r", "r", "r"]})
    for tname in dict.fromkeys(tn for _, tn, _ in found):
        recalls = [(name, _recall_map(t), _num(t.get("score"))) for name, tn, t in found
                   if tn == tname and _recall_map(t)]
        if not recalls:
            continue
        recalls.sort(key=lambda x: -x[2] if math.isfinite(x[2]) else math.inf)
        shown = recalls[:MAX_RECALL_RUNS]
        classes = list(dict.fromkeys(c for _, m, _ in shown for c in m))
        b.append({"kind": "p", "text": f"Per-class recall of {tname} on Val (rows: true class; "
                                       f"one column per run, best first"
                                       + (f"; {len(recalls) - len(shown)} more runs not shown"
                                          if len(recalls) > len(shown) else "") + "):"})
        b.append({"kind": "table", "headers": ["class", *[f"`{n}`" for n, _, _ in shown]],
                  "rows": [[c, *[fmt(m.get(c), 3) for _, m, _ in shown]] for c in classes],
                  "align": ["l", *["r"] * len(shown)]})
    return b


def _curve_blocks(runs: list[dict[str, Any]], figures: Figures) -> list[dict[str, Any]]:
    with_curves = [r for r in runs if r.get("curves")]
    if not with_curves:
        return []
    b: list[dict[str, Any]] = [
        {"kind": "h", "level": 2, "text": "Training curves", "id": "curves"},
        {"kind": "p", "text": "Per-epoch train losses and Val scores of the torch heads "
                              "(`curves_seed<k>.json`), and the task weights of multitask "
                              "weightings."}]
    for r in with_curves:
        b.append({"kind": "h", "level": 3, "text": r["name"]})
        path = figures.draw(f"curves-{r['name']}", plots.plot_learning_curves, r["curves"],
                            title=r["name"])
        b += figure(path, f"`{r['name']}`: learning curves.")
        if any(c.get("task_weights") for c in r["curves"]):
            path = figures.draw(f"weights-{r['name']}", plots.plot_task_weights, r["curves"],
                                title=f"{r['name']}: task weights")
            b += figure(path, f"`{r['name']}`: task-weight trajectories.")
    return b


_VERSION_KEYS = ("torch", "transformers", "opensmile", "numpy", "h5py", "python")


def _store_blocks(sets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    b: list[dict[str, Any]] = [{"kind": "h", "level": 2, "text": "Feature sets",
                                "id": "feature-sets"}]
    if not sets:
        return b + [{"kind": "p", "text": "No feature store in this workdir."}]
    for fs in sets:
        prov, cfg = fs["provenance"], fs.get("config") or {}
        last = prov.get("last_run") or {}
        versions = ", ".join(f"{k} {prov[k]}" for k in _VERSION_KEYS if prov.get(k))
        model = cfg.get("model") or cfg.get("feature_set") or cfg.get("extractor") or ""
        if is_untrained_spec(fs["spec"]):
            model = f"{model} (UNTRAINED random weights: exercises the path, not a result)"
        rate = (f"{last.get('audio_s_per_s')} audio-s/s, {last.get('clips_per_s')} clips/s"
                if last else "-")
        device = str(prov.get("device", "?")) + (f" ({prov['compute_dtype']})"
                                                 if prov.get("compute_dtype") else "")
        when = f"{last.get('date', '-')}" + (f" ({last.get('workers')} workers)"
                                            if last.get("workers") else "")
        # one narrow two-column table per set: a key never wraps, no column is squeezed
        b.append({"kind": "h", "level": 3, "text": f"`{fs['key']}`"})
        b.append({"kind": "table", "headers": ["", ""], "rows": [
            ["spec", f"`{fs['spec']}`"], ["model", str(model)],
            ["rows", f"{fs['rows']} ({len(fs['failed'])} failed)"],
            ["device (compute)", device], ["stored dtype", str(cfg.get("dtype") or prov.get("dtype") or "?")],
            ["versions", versions or "-"], ["last run", when], ["throughput", rate]],
            "align": ["k", "l"], "class": "fields"})
    failed_any = False
    for fs in sets:
        failed = fs["failed"]
        if not failed:
            continue
        if not failed_any:
            b.append({"kind": "h", "level": 3, "text": "Failed clips"})
            failed_any = True
        items = [f"failed `{cid}`: {reason}" for cid, reason in sorted(failed.items())[:MAX_FAILED_LISTED]]
        if len(failed) > MAX_FAILED_LISTED:
            items.append(f"... and {len(failed) - MAX_FAILED_LISTED} more (`verify --workdir` lists all)")
        b.append({"kind": "list", "items": items,
                  "summary": f"`{fs['key']}`: {len(failed)} failed clip(s)"})
    if not failed_any:
        b.append({"kind": "p", "text": "No failed clips."})
    return b


def render_markdown(report: dict[str, Any], *, workdir: str | os.PathLike | None = None) -> str:
    """report.md text; figures are drawn into WORKDIR/report_files (or a temporary folder)."""
    wd = Path(workdir or report["workdir"])
    figures = Figures(wd / FILES_DIR)
    return render_blocks_markdown(report_blocks(report, figures), base=wd)


def write_report(workdir: str | os.PathLike) -> dict[str, Path]:
    """Write report.md, report.html, report.json and report_files/*.png; returns the paths."""
    wd = Path(workdir)
    report = build_report(wd)
    files = wd / FILES_DIR
    if files.is_dir():
        shutil.rmtree(files)  # figures of runs that are gone must not linger
    figures = Figures(files)
    blocks = report_blocks(report, figures)
    paths = {"md": wd / "report.md", "html": wd / "report.html", "json": wd / "report.json"}
    texts = {
        "md": render_blocks_markdown(blocks, base=wd),
        "html": render_html(blocks, title=f"vocal-probe report: {wd.name}"),
        "json": json.dumps(report, indent=2, default=str, allow_nan=True),
    }
    for kind, path in paths.items():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(texts[kind], encoding="utf-8")
        os.replace(tmp, path)
    log.info("report: %d figure(s) in %s", len(figures.made), files)
    return paths
