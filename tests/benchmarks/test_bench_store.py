"""bench store prints one JSON line with every operation measured against reading the bytes once."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

OPS = ("compaction", "noop_rerun", "add_small_set", "one_layer_read")


def test_bench_store_json_line():
    p = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "-q", "bench", "store",
                        "--clips", "20", "60", "--layers", "3", "--dim", "16"],
                       cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["bench"] == "store" and [s["clips"] for s in result["sizes"]] == [20, 60]
    for size in result["sizes"]:
        # 2 poolings x 3 layers x 16 dims float16 per clip, at least, in the store
        assert size["store_mb"] * 2**20 >= size["clips"] * 2 * 3 * 16 * 2
        assert size["read_once_s"] > 0
        for op in OPS:
            assert size[f"{op}_s"] > 0 and size[f"{op}_peak_mb"] >= 0
            assert size[f"{op}_x_read_once"] > 0
        assert size["noop_rerun_replaced_store"] is False  # a no-op rerun touches nothing
        assert size["add_small_set_rewrote_large_set"] is False  # one file per set


def test_bench_store_refuses_a_tiny_size():
    p = subprocess.run([sys.executable, str(ROOT / "run_pipeline.py"), "-q", "bench", "store",
                        "--clips", "3"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "at least 5 clips, got 3" in p.stderr
