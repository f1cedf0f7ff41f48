"""Whisper's encoder and w2v-BERT 2.0 through ``ssl:``: the exactness contract on tiny random
checkpoints saved with ``save_pretrained`` (model and feature extractor).

The reference is written here: the family's own feature extractor on one clip (Whisper: on
each 30 s window, padded as it pads), the model's own forward, each clip's true frames read
from the feature extractor's attention mask, the poolings computed with numpy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from extract.base import ExtractOptions, ExtractorUnavailable, SAMPLE_RATE
from extract.pooling import POOLINGS
from extract.ssl import STRATEGY_FORWARD, SSLExtractor
from extract.untrained import make_untrained_w2vbert, make_untrained_whisper

EXACT = 0.999
WINDOW = 30 * SAMPLE_RATE
# 20 ms, 35 ms, 1 s, 7.7 s, exactly 30 s, 30 s + 1 sample, 40 s
LENGTHS = [320, 561, 16_000, 123_200, WINDOW, WINDOW + 1, 40 * SAMPLE_RATE]
FAMILIES = ("whisper", "w2v-bert")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_families")
    return {"whisper": make_untrained_whisper(root / "whisper"),
            "w2v-bert": make_untrained_w2vbert(root / "w2v-bert")}


_LOADED: dict[tuple, SSLExtractor] = {}


def loaded(folder: Path, **options: object) -> SSLExtractor:
    options.setdefault("device", "cpu")
    key = (str(folder), ExtractOptions(**options))
    if key not in _LOADED:
        ext = SSLExtractor(str(folder), ExtractOptions(**options))
        ext.load()
        _LOADED[key] = ext
    return _LOADED[key]


def clip(num_samples: int, seed: int = 0) -> np.ndarray:
    """Noise with a slow envelope, so that frames differ along the clip."""
    rng = np.random.default_rng(seed + num_samples)
    t = np.arange(num_samples) / SAMPLE_RATE
    return (0.05 * rng.standard_normal(num_samples) * (1.2 + np.sin(2 * np.pi * 0.7 * t))).astype(np.float32)


def reference_states(family: str, folder: Path, signal: np.ndarray) -> list[np.ndarray]:
    """Per hidden state ``(true frames, hidden)``: the model's own preprocessing and forward."""
    from transformers import (SeamlessM4TFeatureExtractor, Wav2Vec2BertModel, WhisperFeatureExtractor,
                              WhisperModel)

    with torch.inference_mode():
        if family == "whisper":
            fe = WhisperFeatureExtractor.from_pretrained(folder)
            encoder = WhisperModel.from_pretrained(folder).eval().encoder
            per_window = []
            for start in range(0, len(signal), WINDOW):
                piece = signal[start:start + WINDOW]
                feats = fe(piece, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
                n = int(feats.attention_mask[0, ::2].sum())  # encoder frames: mel frames, stride 2
                states = encoder(feats.input_features, output_hidden_states=True).hidden_states
                per_window.append([h[0, :n].numpy() for h in states])
            return [np.concatenate(layer) for layer in zip(*per_window)]
        fe = SeamlessM4TFeatureExtractor.from_pretrained(folder)
        model = Wav2Vec2BertModel.from_pretrained(folder).eval()
        if len(signal) < 560:  # documented: zero-padded to one stacked frame
            signal = np.pad(signal, (0, 560 - len(signal)))
        feats = fe(signal, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
        n = int(feats.attention_mask[0].sum())
        states = model(feats.input_features, attention_mask=feats.attention_mask,
                       output_hidden_states=True).hidden_states
        return [h[0, :n].numpy() for h in states]


def pooled(states: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The poolings computed with numpy: ``(layers, hidden)`` each."""
    stacked = [s.astype(np.float64) for s in states]
    return {
        "mean": np.stack([s.mean(0) for s in stacked]), "last": np.stack([s[-1] for s in stacked]),
        "first": np.stack([s[0] for s in stacked]), "max": np.stack([s.max(0) for s in stacked]),
        "std": np.stack([s.std(0) for s in stacked]),
    }


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of matching rows; two (near) zero rows count as identical."""
    a, b = a.astype(np.float64).reshape(-1, a.shape[-1]), b.astype(np.float64).reshape(-1, b.shape[-1])
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    cos = (a * b).sum(-1) / np.maximum(na * nb, 1e-300)
    return np.where((na < 1e-9) & (nb < 1e-9), 1.0, cos)


@pytest.mark.parametrize("family", FAMILIES)
def test_stored_vectors_equal_the_per_clip_reference(folders: dict, family: str) -> None:
    """Every clip (20 ms to 40 s), layer and pooling, batched as the extractor batches them."""
    ext = loaded(folders[family], poolings=POOLINGS, frames_layers=(0, -1), dtype="float32")
    assert ext.strategy_ == STRATEGY_FORWARD
    assert "exact_path" in ext.provenance()
    signals = [clip(n) for n in LENGTHS]
    results = ext.compute_batch(signals)
    worst = 1.0
    for n, signal, out in zip(LENGTHS, signals, results):
        assert isinstance(out, dict), (family, n, out)
        ref = reference_states(family, folders[family], signal)
        assert len(ref) == out["pooled_mean"].shape[0]
        assert int(out["num_frames"]) == ref[0].shape[0] == ext.encoder_.num_frames(max(n, ext.min_samples_))
        for p, value in pooled(ref).items():
            cos = row_cosines(out[f"pooled_{p}"], value)
            worst = min(worst, float(cos.min()))
            assert cos.min() >= EXACT, (family, n, p, cos.min())
        for key, layer in (("frames_l0", 0), (f"frames_l{len(ref) - 1}", -1)):
            assert out[key].shape == ref[layer].shape
            cos = row_cosines(out[key], ref[layer])
            worst = min(worst, float(cos.min()))
            assert cos.min() >= EXACT, (family, n, key, cos.min())
    print(f"{family}: min cosine {worst:.9f} (1 - min = {1 - worst:.2e})")


def test_whisper_true_frames_and_windows(folders: dict) -> None:
    """20 ms frames: ceil(n / 160) mel frames, then stride 2; 30 s windows add up."""
    ext = loaded(folders["whisper"])
    enc = ext.encoder_
    assert [enc.num_frames(n) for n in (1, 160, 161, 320, 321, 16_000, WINDOW)] == [1, 1, 1, 1, 2, 50, 1500]
    assert enc.num_frames(WINDOW + 1) == 1501 and enc.num_frames(40 * SAMPLE_RATE) == 2000
    identity = ext.identity()
    assert identity["long_clips"] == {"window_seconds": 30, "overlap_seconds": 0, "frames": "concatenated"}
    assert identity["input"]["whisper_input"] == "padded-30s" and identity["normalize"] is False


def test_whisper_padding_frames_never_enter_a_pooled_vector(folders: dict) -> None:
    """The mean over the true frames differs from the mean over the whole 30 s window."""
    ext = loaded(folders["whisper"], dtype="float32")
    out = ext.compute_batch([clip(16_000)])[0]
    ref = reference_states("whisper", folders["whisper"], clip(16_000))
    from transformers import WhisperFeatureExtractor, WhisperModel

    fe = WhisperFeatureExtractor.from_pretrained(folders["whisper"])
    with torch.inference_mode():
        whole = WhisperModel.from_pretrained(folders["whisper"]).eval().encoder(
            fe(clip(16_000), sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features,
            output_hidden_states=True).hidden_states
    assert int(out["num_frames"]) == 50
    np.testing.assert_allclose(out["pooled_mean"][-1], ref[-1].mean(0), atol=1e-4, rtol=1e-3)
    assert row_cosines(out["pooled_mean"][-1:], whole[-1][0].mean(0).numpy()[None]).min() < 0.99


def test_whisper_mixed_batch_equals_each_clip_alone(folders: dict) -> None:
    ext = loaded(folders["whisper"], poolings=("mean", "std"), dtype="float32")
    signals = [clip(n, seed=3) for n in (8_000, 320, 64_000, 1_000)]
    together = ext.compute_batch(signals)
    for signal, a in zip(signals, together):
        b = ext.compute_batch([signal])[0]
        for key in ("pooled_mean", "pooled_std"):
            assert row_cosines(a[key], b[key]).min() >= EXACT


def test_a_bad_clip_does_not_sink_the_batch(folders: dict) -> None:
    for family in FAMILIES:
        ext = loaded(folders[family])
        bad = np.full(1_000, np.nan, np.float32)
        out = ext.compute_batch([clip(8_000), bad, np.zeros(0, np.float32)])
        assert isinstance(out[0], dict)
        assert isinstance(out[1], ValueError) and "non-finite" in str(out[1])
        assert isinstance(out[2], ValueError)


def test_fields_and_readable_name(folders: dict) -> None:
    ext = SSLExtractor(str(folders["whisper"]), ExtractOptions(layers=(0, -1), device="cpu"))
    fields = ext.fields()
    assert fields["pooled_mean"].shape == (2, 32)
    assert ext.readable_name() == "ssl-whisper"
    ext = SSLExtractor(str(folders["w2v-bert"]), ExtractOptions(device="cpu"))
    assert ext.fields()["pooled_mean"].shape == (3, 32)


def test_offline_missing_whisper_says_how_to_provide_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ext = SSLExtractor("no-such-org/no-such-whisper-small", ExtractOptions())
    with pytest.raises(ExtractorUnavailable) as info:
        ext.resolve()
    message = str(info.value)
    assert "no-such-org/no-such-whisper-small" in message and "local folder" in message
    assert "`hf download no-such-org/" in message


def test_finetuned_whisper_folder_loads_the_encoder(folders: dict, tmp_path: Path) -> None:
    """A folder saved from ``WhisperForConditionalGeneration`` (a fine-tune) runs the same encoder."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    full = WhisperForConditionalGeneration.from_pretrained(folders["whisper"])
    full.save_pretrained(tmp_path / "ft")
    WhisperFeatureExtractor.from_pretrained(folders["whisper"]).save_pretrained(tmp_path / "ft")
    signal = clip(16_000)
    a = loaded(tmp_path / "ft", dtype="float32").compute_batch([signal])[0]
    b = loaded(folders["whisper"], dtype="float32").compute_batch([signal])[0]
    assert row_cosines(a["pooled_mean"], b["pooled_mean"]).min() >= EXACT


# -- --whisper-input trimmed ------------------------------------------------------------------
def trimmed_reference(folder: Path, signal: np.ndarray) -> list[np.ndarray]:
    """Each 30 s window's log-mel (WhisperFeatureExtractor) cut to its true frames, run alone
    through the encoder's own modules; the last state layer-normed as the model reports it."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    fe = WhisperFeatureExtractor.from_pretrained(folder)
    enc = WhisperModel.from_pretrained(folder).eval().encoder
    per_window = []
    with torch.inference_mode():
        for start in range(0, len(signal), WINDOW):
            feats = fe(signal[start:start + WINDOW], sampling_rate=SAMPLE_RATE, return_tensors="pt",
                       return_attention_mask=True)
            x = feats.input_features[:, :, :int(feats.attention_mask.sum())]
            h = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(x)))).permute(0, 2, 1)
            h = h + enc.embed_positions.weight[:h.shape[1]]
            states = [h]
            for layer in enc.layers:
                out = layer(h, None)
                h = out[0] if isinstance(out, tuple) else out
                states.append(h)
            states[-1] = enc.layer_norm(h)
            per_window.append([s[0].numpy() for s in states])
    return [np.concatenate(layer) for layer in zip(*per_window)]


def test_whisper_trimmed_equals_its_per_clip_reference(folders: dict) -> None:
    ext = loaded(folders["whisper"], poolings=POOLINGS, frames_layers=(0,), dtype="float32",
                 whisper_input="trimmed")
    assert "trimmed" in ext.provenance()["exact_path"]
    signals = [clip(n) for n in LENGTHS]
    worst = 1.0
    for n, signal, out in zip(LENGTHS, signals, ext.compute_batch(signals)):
        ref = trimmed_reference(folders["whisper"], signal)
        assert int(out["num_frames"]) == ref[0].shape[0] == ext.encoder_.num_frames(n)
        for p, value in pooled(ref).items():
            cos = row_cosines(out[f"pooled_{p}"], value)
            worst = min(worst, float(cos.min()))
            assert cos.min() >= EXACT, (n, p, cos.min())
        assert row_cosines(out["frames_l0"], ref[0]).min() >= EXACT
    print(f"whisper trimmed: min cosine {worst:.9f} (1 - min = {1 - worst:.2e})")


def test_whisper_trimmed_is_its_own_representation(folders: dict) -> None:
    padded = loaded(folders["whisper"], dtype="float32")
    trimmed = loaded(folders["whisper"], dtype="float32", whisper_input="trimmed")
    assert padded.identity() != trimmed.identity()
    assert trimmed.identity()["input"]["whisper_input"] == "trimmed-to-clip"
    short, full = clip(16_000), clip(WINDOW)
    a, b = padded.compute_batch([short, full]), trimmed.compute_batch([short, full])
    assert np.abs(a[0]["pooled_mean"] - b[0]["pooled_mean"]).max() > 1e-2  # the padding mattered
    assert row_cosines(a[1]["pooled_mean"], b[1]["pooled_mean"]).min() >= EXACT  # a full window: same


def test_whisper_input_is_checked(folders: dict) -> None:
    with pytest.raises(ValueError, match="whisper_input 'cut' is not valid; valid: padded, trimmed"):
        SSLExtractor(str(folders["whisper"]), ExtractOptions(whisper_input="cut")).resolve()
    with pytest.raises(ValueError, match="applies to Whisper checkpoints only"):
        SSLExtractor(str(folders["w2v-bert"]), ExtractOptions(whisper_input="trimmed")).resolve()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_equals_the_per_clip_reference(folders: dict, family: str) -> None:
    """Under CUDA's bf16 autocast the stored vectors stay within 0.99 of the float32 reference."""
    ext = loaded(folders[family], device="cuda", dtype="float32")
    signals = [clip(n) for n in (320, 16_000, WINDOW + 1)]
    for signal, out in zip(signals, ext.compute_batch(signals)):
        ref = pooled(reference_states(family, folders[family], signal))
        assert row_cosines(out["pooled_mean"], ref["mean"]).min() >= 0.99, (family, len(signal))
