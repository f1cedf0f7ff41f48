"""Gather every run of a workdir into ``report.md`` and ``report.json``.

Scores come from each run's metrics.json (computed by ``heads``); this module only formats.
Published numbers are shown beside ours, labelled as published, with their source.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reports.published import published_for

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    name: str
    path: Path
    metrics: dict[str, Any]
    config: dict[str, Any]


def load_runs(workdir: str | os.PathLike) -> list[RunSummary]:
    """Every run under WORKDIR/runs with a readable metrics.json, oldest first."""
    runs = []
    base = Path(workdir) / "runs"
    if not base.is_dir():
        return runs
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
        runs.append(RunSummary(d.name, d, metrics, config))
    return runs


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) else str(x)


def _features_text(metrics: dict[str, Any]) -> str:
    parts = []
    for f in metrics.get("features", []):
        s = f.get("spec", f.get("key", "?"))
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
                         "test": entry.get("test", {}).get("score"), "n_val": val.get("n")})
    return rows


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


def build_report(workdir: str | os.PathLike) -> dict[str, Any]:
    """The report's content as plain data (also written as report.json)."""
    wd = Path(workdir)
    runs = load_runs(wd)
    rows = results_rows(runs)
    tasks = sorted({r["task"] for r in rows})
    published = {t: [p.__dict__ for p in published_for(t)] for t in tasks}
    return {"workdir": str(wd), "generated": _dt.datetime.now().isoformat(timespec="seconds"),
            "results": rows, "published": published, "feature_sets": store_rows(wd),
            "runs": [{"name": r.name, "metrics": r.metrics, "config": r.config} for r in runs]}


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Results for `{report['workdir']}`", "",
             f"Generated {report['generated']}. Scores are on the Val split unless marked Test; "
             "CCC is the population form (= `audmetric.concordance_cc`); intervals are 95 % "
             "percentile bootstrap over Val clips. Rows marked *published* are numbers from the "
             "papers (on the real HUME-VB data), shown for reference, not computed here.", ""]
    rows = report["results"]
    if not rows:
        lines += ["No runs yet: `run_pipeline.py train --workdir ...` writes them.", ""]
    for task in sorted({r["task"] for r in rows}):
        lines += [f"## {task}", "",
                  "| run | head | features | metric | Val | 95 % CI | seeds | Test |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in [r for r in rows if r["task"] == task]:
            ci = r["ci"] or [None, None]
            val = _fmt(r["val"]) + (f" ± {_fmt(r['val_std'])}" if r.get("val_std") else "")
            lines.append(f"| {r['run']} | {r['head']} | {r['features']} | {r['metric']} | {val} | "
                         f"[{_fmt(ci[0])}, {_fmt(ci[1])}] | {r['seeds']} | {_fmt(r['test'])} |")
        for p in report["published"].get(task, []):
            val = p["score"] if p["split"] == "val" else None
            test = p["score"] if p["split"] == "test" else None
            lines.append(f"| *published*: {p['system']} | | ({p['source']}) | {p['metric']} | "
                         f"{_fmt(val)} | | | {_fmt(test)} |")
        lines.append("")
        for r in [x for x in report["runs"] if task in x["metrics"].get("tasks", {})]:
            per_col = r["metrics"]["tasks"][task]["val"].get("per_column") or {}
            if per_col and len(per_col) <= 12:
                lines.append(f"Per column ({r['name']}): " + ", ".join(
                    f"{c} {_fmt(v, 3)}" for c, v in per_col.items()))
        lines.append("")
    lines += ["## Feature sets", ""]
    for fs in report["feature_sets"]:
        prov = fs["provenance"]
        last = prov.get("last_run", {})
        lines.append(f"- `{fs['key']}` ({fs['spec']}): {fs['rows']} rows, {len(fs['failed'])} failed; "
                     f"device {prov.get('device', '?')}, dtype {prov.get('dtype', '?')}"
                     + (f", last run {last.get('date')} at {last.get('audio_s_per_s')} audio-s/s" if last else ""))
        for cid, reason in sorted(fs["failed"].items())[:50]:
            lines.append(f"  - failed `{cid}`: {reason}")
    lines.append("")
    return "\n".join(lines)


def write_report(workdir: str | os.PathLike) -> dict[str, Path]:
    """Write report.md and report.json into the workdir; returns their paths."""
    wd = Path(workdir)
    report = build_report(wd)
    paths = {"md": wd / "report.md", "json": wd / "report.json"}
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    paths["json"].write_text(json.dumps(report, indent=2, default=str, allow_nan=True), encoding="utf-8")
    return paths
