"""bench heads prints one JSON line with the MLP and LSTM timings (tiny sizes here)."""
from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_bench_heads_json_line(capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    rc = main(["-q", "bench", "heads", "--clips", "256", "--val-clips", "64", "--dim", "16",
               "--epochs", "2", "--frames", "6", "--lstm-dim", "8", "--lstm-hidden", "8",
               "--device", "cpu", "--threads", "1"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("mlp_seconds", "lstm_seconds", "device", "samples_per_s", "lstm_samples_per_s"):
        assert key in result
    assert result["device"] == "cpu" and result["mlp_epochs"] == 2 and result["lstm_epochs"] == 1
    assert result["mlp_seconds"] > 0 and result["samples_per_s"] > 0
    assert result["mlp_tasks"] == 5 and result["lstm_frames"] == 6
