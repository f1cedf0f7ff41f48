"""The report's cross-validation section, from a cv.json written by heads.crossval's own
summary: per fold, mean ± std over folds, pooled WA / UA / macro-F1, the published rows."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from data.folds import Fold
from heads.crossval import summarise
from reports.report import write_report

CLASSES = ["ang", "hap", "neu", "sad"]


def _metrics(confusion: np.ndarray) -> dict:
    c = np.asarray(confusion, dtype=float)
    recall = np.diag(c) / c.sum(axis=1)
    precision = np.diag(c) / c.sum(axis=0)
    f1 = 2 * precision * recall / (precision + recall)
    target = {"confusion": confusion.tolist(), "classes": CLASSES, "wa": np.trace(c) / c.sum(),
              "uar": recall.mean(), "macro_f1": f1.mean()}
    block = {"metric": "uar", "score": recall.mean(), "per_column": {},
             "targets": {"emotion4": target}}
    return {"tasks": {"iemocap4": {"test": block}}}


def test_crossval_section_shows_folds_over_folds_pooled_and_published(tmp_path: Path) -> None:
    confusions = [np.array([[8, 1, 1, 0], [1, 6, 2, 1], [0, 2, 9, 1], [0, 1, 1, 6]]),
                  np.array([[5, 2, 1, 0], [2, 7, 1, 0], [1, 1, 8, 2], [0, 0, 2, 7]])]
    folds = [Fold(f"speaker={g}", {f"{g}_a": "Train", f"{g}_b": "Test"}, column="speaker",
                  test_groups=(g,), val_rule="none") for g in ("01F", "01M")]
    results = [SimpleNamespace(metrics=_metrics(c), run_dir=tmp_path / f.name)
               for f, c in zip(folds, confusions)]
    summary = {"protocol": "leave-one-out:speaker", "val_rule": "none", "run": "loso",
               "task": "iemocap4", "head": "logreg", "features": ["opensmile:eGeMAPSv02"],
               **summarise(folds, results)}
    wd = tmp_path / "wd"
    (wd / "runs" / "loso").mkdir(parents=True)
    (wd / "runs" / "loso" / "cv.json").write_text(json.dumps(summary))
    write_report(wd)
    md = (wd / "report.md").read_text()
    section = md[md.index("## Cross-validation"):]
    assert "### loso" in section and "`train --cv leave-one-out:speaker`" in section
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| Test")}
    uar = [m["tasks"]["iemocap4"]["test"]["score"] for m in (r.metrics for r in results)]
    assert rows["uar"][2] == f"{np.mean(uar):.4f} ± {np.std(uar, ddof=1):.4f}"
    assert rows["uar"][4:6] == [f"{uar[0]:.4f}", f"{uar[1]:.4f}"]
    total = sum(confusions)
    assert rows["emotion4 WA"][3] == f"{np.trace(total) / total.sum():.4f}"  # pooled, by hand
    recall = np.diag(total) / total.sum(axis=1)
    assert rows["emotion4 UA"][3] == f"{recall.mean():.4f}"
    published = [r for k, r in rows.items() if k.startswith("*published*")]
    assert any("GRL beta 1" in r[1] and r[3] == "0.7510" for r in published)
    assert "No runs yet" not in md


def test_no_crossval_study_no_section(tmp_path: Path) -> None:
    (tmp_path / "wd").mkdir()
    write_report(tmp_path / "wd")
    assert "## Cross-validation" not in (tmp_path / "wd" / "report.md").read_text()
