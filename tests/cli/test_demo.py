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
    assert (wd / "probes" / "demo-probe-avb-high" / "probe.json").exists()
    html = (wd / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img src=\"report_files" not in html
    assert list((wd / "runs").glob("demo-avb-high-ridge-ssl-*"))
