"""bench finetune-step prints one JSON line: one real optimiser step (tiny batch on the CPU)."""
from __future__ import annotations

import json

import pytest


def test_bench_finetune_step_json_line(capsys: pytest.CaptureFixture) -> None:
    from cli.main import main

    rc = main(["-q", "bench", "finetune-step", "--batch", "1", "--seconds", "0.5", "--steps", "1",
               "--warmup", "0", "--device", "cpu"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["bench"] == "finetune-step" and result["device"] == "cpu"
    assert result["compute_dtype"] == "float32" and result["loss_finite"] is True
    assert result["seconds_per_step"] > 0 and result["audio_s_per_s"] > 0
    # base size: 94.4 M parameters, of which the frozen conv feature encoder holds 4.2 M
    assert 85e6 < result["trainable_parameters"] < 92e6
    assert "peak_memory_gib" not in result
    ser = result["ser"]  # paper 004: all three heads against the emotion head alone, same run
    assert ser["loss_finite"] is True and ser["ctc_chars_per_clip"] == 7
    assert ser["all_heads_seconds_per_audio_second"] == pytest.approx(ser["all_heads_seconds_per_step"] / 0.5, rel=1e-2)
    assert ser["all_heads_over_emotion"] == pytest.approx(
        ser["all_heads_seconds_per_step"] / ser["emotion_seconds_per_step"], rel=2e-2)
