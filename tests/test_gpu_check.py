"""The CPU side of .ci/gpu-check: arguments, the plan, result parsing, the JSON summary, and a
clean exit 0 with the reason on a machine without CUDA."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "gpu-check"


def load():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


gc = load()


def test_arguments() -> None:
    args = gc.parse_args([])
    assert not args.prepare and args.budget == 480 and args.out is None
    assert args.wheels == ROOT / ".ci" / "wheels"
    assert gc.parse_args(["--prepare", "--with-xgboost"]).with_xgboost
    for bad in (["--budget", "0"], ["--with-xgboost"], ["--no-such-flag"]):
        with pytest.raises(SystemExit) as info:
            gc.parse_args(bad)
        assert info.value.code == 2


def test_the_plan_runs_real_commands_with_valid_flags(tmp_path: Path) -> None:
    """Every bench command parses with the CLI's own parser (a wrong flag fails here, not on the GPU)."""
    from cli.cmd_bench import BENCHES
    from cli.main import build_parser

    steps = gc.plan(gc.parse_args(["--out", str(tmp_path)]), deselect=["test_xgb_on_gpu"])
    names = [s["name"] for s in steps]
    assert names == ["pytest_gpu", "bench_ssl_base", "bench_ssl_large", "bench_heads", "bench_finetune_step"]
    assert sum(s["timeout"] for s in steps) <= 480
    parser = build_parser()
    for step in steps[1:]:
        cmd = step["command"]
        assert cmd[1:3] == ["run_pipeline.py", "bench"] and cmd[3] in BENCHES
        args = parser.parse_args(cmd[2:])
        assert args.device == "cuda"
    assert parser.parse_args(steps[2]["command"][2:]).size == "large"
    pytest_cmd = steps[0]["command"]
    assert pytest_cmd[pytest_cmd.index("-m", 2) + 1] == "gpu" and "not test_xgb_on_gpu" in pytest_cmd
    assert steps[0]["junit"] == str(tmp_path / "pytest-gpu.xml")
    files = gc.gpu_test_files()
    assert {"tests/extract/test_ssl.py", "tests/heads/test_finetune.py"} <= set(files)
    assert all(f in pytest_cmd for f in files)


def test_download_command_targets_the_gpu_image() -> None:
    cmd = gc.download_command("soxr", Path("/w"), "3.12")
    text = shlex.join(cmd)
    assert cmd[-1] == "soxr" and "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert "--python-version 3.12" in text and "--implementation cp" in text and "-d /w" in text
    assert "--platform manylinux_2_28_x86_64" in text and "--platform manylinux2014_x86_64" in text
    assert set(gc.WHEELS) == {"soundfile", "cffi", "pycparser", "soxr"}


def test_result_parsing(tmp_path: Path) -> None:
    out = 'INFO something\n{"bench": "ssl", "x_real_time": 5123.4}\nnot json {\n'
    assert gc.last_json_line(out) == {"bench": "ssl", "x_real_time": 5123.4}
    assert gc.last_json_line("nothing here") is None
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite name="pytest" tests="7" failures="1" errors="1" '
                   'skipped="2"></testsuite></testsuites>')
    assert gc.junit_counts(str(xml)) == {"tests": 7, "passed": 3, "failed": 1, "errors": 1, "skipped": 2}
    assert gc.junit_counts(str(tmp_path / "absent.xml")) is None


def test_summary_shape() -> None:
    steps = {
        "pytest_gpu": {"status": "ok", "rc": 0, "seconds": 40.0, "result": {"tests": 9, "passed": 9}},
        "bench_ssl_base": {"status": "ok", "rc": 0, "seconds": 60.0,
                           "result": {"x_real_time": 6000.0, "padding_ratio": 0.05, "device": "H200"}},
        "bench_heads": {"status": "timeout", "rc": None, "seconds": 60.0, "result": None, "tail": "..."},
    }
    summary = gc.summarise(steps, probe={"cuda": True}, started=gc.time.monotonic(), extra={"commit": "c"})
    json.dumps(summary)
    assert summary["gpu_check"] == "ran" and summary["ok"] is False and summary["reason"]
    assert summary["figures"]["bench_ssl_base"] == {"x_real_time": 6000.0, "padding_ratio": 0.05}
    assert summary["figures"]["pytest_gpu"] == {"tests": 9, "passed": 9}
    assert "bench_heads" not in summary["figures"] and summary["commit"] == "c"
    for step in steps:
        steps[step]["status"] = "ok"
    assert gc.summarise(steps, probe={}, started=0.0, extra={})["ok"] is True


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_says_why_and_exits_0(tmp_path: Path) -> None:
    out, wheels = tmp_path / "out", tmp_path / "no-wheels"
    wheels.mkdir()
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--wheels", str(wheels),
                           "--site", str(tmp_path / "site")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary == json.loads((out / "gpu-check.json").read_text())
    assert summary["gpu_check"] == "skipped" and summary["ok"] is True
    assert "CUDA" in summary["reason"] and summary["host"]["cuda"] is False
    assert summary["host"]["versions"]["torch"] and summary["wheels_installed"] == []
    assert {"date", "commit", "budget_s", "steps", "figures"} <= set(summary)


def test_dry_run_prints_the_plan() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    plan = json.loads(done.stdout)
    assert plan["gpu_check"] == "plan" and len(plan["steps"]) == 5
