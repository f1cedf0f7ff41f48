"""The demo report as a reader sees it, through the real command line: the corpus named and
marked synthetic, one row per published system, a reason where a number is absent, MAE apart
from CCC, extra classification metrics shown when a run has them, and (in headless Chromium)
no table wider than the page and no cell taller than a few lines."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from data.corpora import read_corpus
from tests.cli.clitools import cli
from tests.reports.test_report import MAX_CELL_LINES, NO_CHROMIUM, _chromium, chromium_layout


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    wd = tmp_path_factory.mktemp("demo") / "wd"
    cli("demo", "--workdir", str(wd), "--clips", "24", "--workers", "1")
    return wd


def _table_rows(md: str, task: str) -> list[str]:
    """The rows of a task's first table (the runs and published systems)."""
    section = md.split(f"## {task}\n", 1)[1].split("\n## ", 1)[0]
    rows: list[str] = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    return [r for r in rows if r.startswith("| ")]


def test_demo_report_says_its_corpus_is_synthetic_and_names_it(demo):
    md = (demo / "report.md").read_text()
    html = (demo / "report.html").read_text()
    first = md.splitlines()[0]
    assert first.startswith("# Results on a SYNTHETIC demo corpus"), first
    assert "SYNTHETIC DEMO CORPUS: these numbers are not results" in md
    assert 'class="banner"' in html and "SYNTHETIC DEMO CORPUS" in html
    assert f"Corpus `{demo / 'corpus'}` (A-VB 2022 layout)" in md
    assert "cannot be compared with them" in md  # beside every published table


def test_one_row_per_published_system_with_val_and_test(demo):
    md = (demo / "report.md").read_text()
    rows = _table_rows(md, "avb-high")
    baseline = [r for r in rows if "*published*: A-VB baseline (end-to-end)" in r]
    assert len(baseline) == 1, rows
    cells = [c.strip() for c in baseline[0].strip("|").split("|")]
    assert cells[4] == "0.5640" and cells[7] == "0.5686", cells  # Val and Test on one row
    names = [r.split("|")[1].strip() for r in rows if "*published*" in r]
    assert len(names) == len(set(names))


def test_absent_numbers_say_why(demo):
    md = (demo / "report.md").read_text()
    for task in ("avb-high", "avb-type", "exvo"):
        for row in _table_rows(md, task)[2:]:
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert "-" not in (cells[4], cells[7]), row
            if not row.startswith("| *published*"):
                assert cells[7] == "no Test labels", row  # A-VB layout: Test labels withheld
    assert "not published" in md


def test_mae_is_plotted_apart_from_ccc(demo):
    md = (demo / "report.md").read_text()
    exvo = md.split("## exvo\n", 1)[1].split("\n## ", 1)[0]
    per_column = [line for line in exvo.splitlines() if line.startswith("Per column")]
    assert per_column and all("Age" not in line for line in per_column), per_column
    assert "](report_files/exvo-mae.png)" in exvo and "](report_files/exvo-per-column.png)" in exvo
    assert (demo / "report_files" / "exvo-mae.png").stat().st_size > 0


def test_extra_classification_metrics_are_shown_when_present(demo):
    run = demo / "runs" / "demo-avb-type-logreg-eGeMAPSv02"
    metrics = json.loads((run / "metrics.json").read_text())
    target = metrics["tasks"]["avb-type"]["val"]["targets"]["type"]
    classes = target["classes"]
    target.update({"wa": 0.6123, "macro_f1": 0.5432,
                   "per_class_recall": {c: round(0.1 * (i + 1), 3) for i, c in enumerate(classes)}})
    (run / "metrics.json").write_text(json.dumps(metrics))
    cli("report", "--workdir", str(demo))
    md = (demo / "report.md").read_text()
    assert "### avb-type: classification metrics" in md
    row = [line for line in md.splitlines()
           if line.startswith("| demo-avb-type-logreg-eGeMAPSv02 | type |")]
    assert row and "0.6123" in row[0] and "0.5432" in row[0], row
    recall = md.split("Per-class recall of type", 1)[1]
    for i, c in enumerate(classes):
        assert re.search(rf"^\| {re.escape(c)} \| {0.1 * (i + 1):.3f} \|", recall, re.M), c
    # the other run is listed with its own numbers, as its metrics.json has them
    other = json.loads((demo / "runs" / "demo-avb-type-xgb-eGeMAPSv02" / "metrics.json").read_text())
    wa = other["tasks"]["avb-type"]["val"]["targets"]["type"]["wa"]
    row = [line for line in md.splitlines() if line.startswith("| demo-avb-type-xgb-eGeMAPSv02 | type |")]
    assert row and f"{wa:.4f}" in row[0], row


def test_a_corpus_of_ones_own_is_named_and_no_hume_vb_is_claimed(demo, tmp_path):
    c = read_corpus(demo / "corpus", "avb")
    rows = [{"file": str(Path(p).relative_to(demo / "corpus")), "split": s.lower(),
             "awe": c.labels.loc[cid, "Awe"]}
            for cid, p, s in zip(c.clips.index, c.clips["path"], c.clips["split"])]
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(labels, index=False)
    wd = tmp_path / "mine"
    cli("extract", "--corpus", str(demo / "corpus"), "--layout", "csv", "--labels", str(labels),
        "--workdir", str(wd), "--features", "opensmile:eGeMAPSv02", "--workers", "1")
    cli("train", "--workdir", str(wd), "--task", "regress:awe", "--features",
        "opensmile:eGeMAPSv02", "--head", "ridge", "--n-boot", "10", "--run-name", "mine")
    cli("report", "--workdir", str(wd))
    md = (wd / "report.md").read_text()
    assert md.splitlines()[0].startswith("# Results on a SYNTHETIC demo corpus (corpus)")
    assert "(a CSV table of files and labels, labels `" in md
    assert "HUME-VB" not in md and "| *published*" not in md


@pytest.mark.skipif(_chromium() is None, reason=NO_CHROMIUM)
def test_demo_page_layout_in_headless_chromium(demo, tmp_path):
    m = chromium_layout(demo / "report.html", tmp_path)
    assert int(m["overflow"]) <= 1, f"a table is {m['overflow']} px wider than the page"
    assert float(m["tallest"]) <= MAX_CELL_LINES, (
        f"a cell is {m['tallest']} lines tall: {m.get('tallest-cell')!r}")
