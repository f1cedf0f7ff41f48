"""The report's cross-validation section: every study ``train --cv`` / ``finetune --cv`` wrote
(``WORKDIR/runs/<name>/cv.json``, ``WORKDIR/finetuned/<name>/cv.json``), with the score per fold,
mean ± std over folds and, for classes, WA / UA / macro-F1 over folds and pooled over every
fold's Test predictions, beside the published numbers of the study's task.

The fold runs themselves (``<name>/<fold>/``) are not listed among the single runs: a study is
read as one result.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from heads.aux_metrics import quantities
from heads.rundir import read_results
from reports.auxiliary import auxiliary_blocks
from reports.blocks import fmt

log = logging.getLogger(__name__)

STUDY_FOLDERS = ("runs", "finetuned")
"""Where cross-validation studies are written (``train --cv``, ``finetune --cv``)."""


def load_studies(workdir: str | Path) -> list[dict[str, Any]]:
    """Every readable cv.json of a workdir, with ``name`` and ``stage`` (train / finetune)."""
    return [{**d, "name": folder.name, "stage": stage}
            for base, stage in zip(STUDY_FOLDERS, ("train", "finetune"))
            for folder, d in read_results(Path(workdir) / base, "cv.json")]


def _mean_std(s: dict[str, Any] | None, digits: int = 4) -> str:
    """``mean ± std``; the mean alone for one fold (a spread over one fold is no spread)."""
    if not s:
        return "-"
    one = len(s.get("folds") or []) < 2
    return fmt(s.get("mean"), digits) + ("" if one or s.get("std") is None
                                         else f" ± {fmt(s['std'], digits)}")


def crossval_blocks(studies: list[dict[str, Any]],
                    published: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One subsection per study: settings, folds, then per task and split the headline per
    fold and over folds, classification targets' WA / UA / macro-F1 (over folds, pooled), and
    the published rows of the task (labelled as published)."""
    if not studies:
        return []
    b: list[dict[str, Any]] = [{"kind": "h", "level": 2, "text": "Cross-validation",
                                "id": "crossval"}]
    for s in studies:
        folds = [f["name"] for f in s.get("folds", [])]
        b.append({"kind": "h", "level": 3, "text": s["name"]})
        what = (f"`{s['stage']} --cv {s.get('protocol')}` (Val rule {s.get('val_rule')}), task "
                f"{s.get('task')}" + (f", head {s['head']}" if s.get("head") else "")
                + (f", features {', '.join(s['features'])}" if s.get("features") else ""))
        b.append({"kind": "p", "text": f"{what}; {len(folds)} fold(s): {', '.join(folds)}. "
                                       f"Over folds: mean ± std (ddof 1); pooled: every fold's "
                                       f"Test predictions together (summed confusion matrices)."})
        for task, entry in s.get("tasks", {}).items():
            rows = []
            for split, block in entry.items():
                score = block.get("score") or {}
                rows.append([split.capitalize(), block.get("metric") or "score", _mean_std(score), ""]
                            + [fmt(x) for x in score.get("folds", [])])
                for tg, t in (block.get("targets") or {}).items():
                    pooled = t.get("pooled") or {}
                    for key, label in (("wa", "WA"), ("uar", "UA"), ("macro_f1", "macro-F1")):
                        rows.append([split.capitalize(), f"{tg} {label}", _mean_std(t.get(key)),
                                     fmt(pooled.get(key)) if split == "test" else ""]
                                    + [fmt(x) for x in (t.get(key) or {}).get("folds", [])])
            for head, split, q, st in quantities(s.get("aux") or {}):
                rows.append([split.capitalize(), f"{head.replace('_', ' ')} {q.replace('_', ' ')}",
                             _mean_std(st), ""] + [fmt(x) for x in st.get("folds", [])])
            pubs = [p for p in published.get(task, [])]
            for p in pubs:
                rows.append([p["split"].capitalize(), f"*published*: {p['system']} ({p['metric']})",
                             "", fmt(p["score"]), *[""] * len(folds)])
            headers = ["split", "quantity", "mean ± std", "pooled / published"] + folds
            b.append({"kind": "p", "text": f"**{task}**" + (
                " (published rows: one fold as the paper's, our rows over the protocol's folds)"
                if pubs else "")})
            b.append({"kind": "table", "headers": headers, "rows": rows,
                      "row_class": ["published" if r[1].startswith("*published*") else None
                                    for r in rows],
                      "align": ["l", "l", "r", "r"] + ["r"] * len(folds)})
        if not s.get("aux"):  # none over folds: each fold's run (one in an older layout is named)
            fold_runs = _fold_metrics(s)
            b += auxiliary_blocks(fold_runs, fold_runs)
    return b


def _fold_metrics(study: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``<study>/<fold>`` -> {"metrics": the fold run's metrics.json}, for readable fold runs."""
    out = {}
    for f in study.get("folds", []):
        path = Path(f.get("run", "")) / "metrics.json"
        try:
            out[f"{study['name']}/{path.parent.name}"] = {"metrics": json.loads(path.read_text())}
        except (OSError, ValueError):
            continue
    return out
