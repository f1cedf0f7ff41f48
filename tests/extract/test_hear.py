"""The HEAR API (extract.hear): embeddings equal a direct per-clip transformers forward pass,
timestamps are frame centres 20 ms apart, the model string is parsed and refused clearly, and
the hearvalidator package's own validator passes on a tiny random checkpoint."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import extract.hear as hear

ROOT = Path(__file__).resolve().parents[2]


def reference_states(folder: Path, wave: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Hidden states of one clip by transformers alone: its feature extractor, then the model."""
    from transformers import AutoFeatureExtractor, AutoModel

    fe = AutoFeatureExtractor.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    inputs = fe(wave, sampling_rate=16_000, return_tensors="pt")
    with torch.inference_mode():
        return model(inputs["input_values"], output_hidden_states=True).hidden_states


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("family", ["wav2vec2-group", "wavlm"])
def test_embeddings_equal_a_direct_forward_pass(tiny_models, family):
    folder = tiny_models[family]
    model = hear.load_model(f"{folder}@1,3:mean")
    assert (model.layers, model.scene_embedding_size, model.timestamp_embedding_size) == ((1, 3), 64, 64)
    rng = np.random.default_rng(0)
    audio = torch.from_numpy((rng.uniform(-1, 1, size=(3, 16_000 + 123))).astype(np.float32))
    scene = hear.get_scene_embeddings(audio, model)
    frames, stamps = hear.get_timestamp_embeddings(audio, model)
    assert scene.dtype == frames.dtype == torch.float32 and scene.shape == (3, 64)
    for i in range(3):
        states = reference_states(folder, audio[i].numpy())
        ref_frames = torch.cat([states[1][0], states[3][0]], dim=1).numpy()
        assert frames.shape[1] == ref_frames.shape[0] == 50
        for t in range(ref_frames.shape[0]):
            assert cosine(frames[i, t].numpy(), ref_frames[t]) >= 0.999
        assert cosine(scene[i].numpy(), ref_frames.mean(axis=0)) >= 0.999
    # frame t covers samples [320 t, 320 t + 400): its centre is 20 t + 12.5 ms
    assert stamps[0, :3].tolist() == [12.5, 32.5, 52.5]
    assert torch.allclose(torch.diff(stamps, dim=1), torch.full((3, 49), 20.0))


def test_default_is_the_last_hidden_state_mean_pooled(tiny_models):
    folder = tiny_models["wav2vec2-group"]
    model = hear.load_model(str(folder))
    assert model.layers == (3,) and model.pooling == "mean" and model.scene_embedding_size == 32
    wave = np.random.default_rng(1).uniform(-1, 1, 8000).astype(np.float32)
    scene = hear.get_scene_embeddings(torch.from_numpy(wave[None]), model)[0].numpy()
    ref = reference_states(folder, wave)[3][0].mean(dim=0).numpy()
    assert cosine(scene, ref) >= 0.999
    every = hear.load_model(f"{folder}@all:max")
    assert every.layers == (0, 1, 2, 3) and every.scene_embedding_size == 128


def test_model_strings_are_checked():
    assert hear.parse_model_string("org/name@2:std") == ("org/name", (2,), "std")
    with pytest.raises(ValueError, match="pooling 'median' is not one of"):
        hear.parse_model_string("org/name@2:median")
    with pytest.raises(ValueError, match="hear-validator extract.hear --model"):
        hear.load_model("")


@pytest.mark.skipif(importlib.util.find_spec("hearvalidator") is None,
                    reason="hearvalidator not installed: pip install --no-deps hearvalidator==2021.0.2")
def test_hear_validator_passes(tiny_models):
    env = dict(os.environ)
    path = [str(ROOT)]
    if importlib.util.find_spec("tensorflow") is None:  # the validator imports it at the top
        path.append(str(Path(__file__).parent / "hear_stand_in"))
    env["PYTHONPATH"] = os.pathsep.join(path + [env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, "-m", "hearvalidator.validate", "extract.hear", "--model",
                        f"{tiny_models['wav2vec2-group']}@2,3:mean", "--device", "cpu"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Looks good!" in p.stdout
    assert "timestamp_embedding_size: 64" in p.stdout
