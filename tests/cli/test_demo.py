"""The README's first command: the demo end to end, with the learnability bars of the issue."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    wd = tmp_path / "demo"
    p = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "-q", "demo", "--workdir",
                        str(wd)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr

    def val(run: str) -> float:
        return json.loads((wd / "runs" / run / "metrics.json").read_text())["val"]["score"]

    # the generator's labels are learnable by construction: lower means a bug
    assert val("demo-avb-high-ridge-eGeMAPSv02") >= 0.5
    assert val("demo-avb-type-logreg-eGeMAPSv02") >= 0.6
    assert 0 < val("demo-exvo-ridge-eGeMAPSv02") < 1
    report = (wd / "report.md").read_text()
    for task in ("avb-high", "avb-two", "avb-type", "exvo"):
        assert f"## {task}" in report
    assert "*published*" in report
    assert list((wd / "runs" / "demo-avb-type-logreg-eGeMAPSv02").glob("predictions_test_*.csv"))
    # SSL path, probe and the self-contained HTML report
    # the two-model layer study: a probe of each family, their layers compared by analyze
    probes = sorted(p.parent.name for p in (wd / "probes").glob("*/probe.json"))
    assert len(probes) == 2 and any("wav2vec2" in p for p in probes) and any("whisper" in p for p in probes)
    (analysis,) = (wd / "analyses").glob("*/analysis.json")
    a = json.loads(analysis.read_text())
    assert [s["spec"].split("/")[-1] for s in a["sets"]] == [
        probes[0].split("avb-high-")[1], probes[1].split("avb-high-")[1]]  # wav2vec2 rows, whisper columns
    assert a["cka"]["between"] is not None and len(a["cca"]) == 2
    html = (wd / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img src=\"report_files" not in html
    assert "## Layer analyses (training-free)" in report and report.count("UNTRAINED") >= 2
    assert list((wd / "runs").glob("demo-avb-high-ridge-ssl-*"))
