"""bench probe prints one JSON line with probe_seconds (tiny sizes here) and finds the curve's
peak layer of the synthetic store."""
from __future__ import annotations

import argparse
import json

import pytest


def test_bench_probe_json_line(capsys: pytest.CaptureFixture) -> None:
    from benchmarks import probe as bench
    from cli import cmd_bench

    parser = argparse.ArgumentParser()  # `bench probe` alone: no other command's imports
    bench.add_arguments(parser)
    args = parser.parse_args(["--clips", "600", "--layers", "7", "--dim", "16", "--seeds", "2",
                              "--n-boot", "50"])
    rc = cmd_bench._run(bench, args)
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    for key in ("probe_seconds", "probe_cpu_seconds", "n_clips", "n_layers", "dims", "device"):
        assert key in result
    assert result["n_clips"] == 600 and result["n_layers"] == 7 and result["dims"] == 16
    assert result["probe_seconds"] > 0 and result["device"] == "cpu"
    assert result["best_layer"] == 4  # the synthetic signal peaks at two thirds of the depth
