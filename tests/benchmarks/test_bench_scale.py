"""bench scale prints one JSON line and the merged store equals the single-process one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_scale_json_line():
    p = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "-q", "bench", "scale",
                        "--clips", "200", "--shards", "3", "--dim", "32"],
                       cwd=ROOT, capture_output=True, text=True, check=True)
    line = p.stdout.strip().splitlines()[-1]
    result = json.loads(line)
    assert result["merged_identical_to_single"] is True
    assert result["merge_s"] > 0 and result["merge_s_per_gb"] > 0
