"""Tests of the SSL extractor on tiny random checkpoints of every family (see conftest.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from extract.base import EXTRACTORS, ExtractOptions, ExtractorUnavailable, SAMPLE_RATE
from extract.pooling import POOLINGS, PoolingAccumulator, masked_pool, validate_poolings
from extract.ssl import STRATEGY_BATCHED, STRATEGY_SPLIT, SSLExtractor
from tests.extract.conftest import FAMILIES, build_tiny_model

N_STATES = 4  # 3 transformer layers + the input of the first
# 20 ms, exactly one receptive field, one sample more, ..., 15 s
LENGTHS = [320, 400, 401, 1_000, 8_000, 16_000, 36_800, 64_000, 123_200, 240_000]
EXACT = 0.999

_CACHE: dict[tuple, SSLExtractor] = {}


def make(folder: Path | str, **options: object) -> SSLExtractor:
    """A resolved extractor (not loaded), on the CPU unless a device is named."""
    options.setdefault("device", "cpu")
    ext = SSLExtractor(str(folder), ExtractOptions(**options))
    ext.resolve()
    return ext


def loaded(folder: Path, **options: object) -> SSLExtractor:
    """A loaded extractor, shared between tests with the same folder and options.

    The front end runs batched as it does on CUDA (on the CPU it runs per clip by default).
    """
    options.setdefault("device", "cpu")
    key = (str(folder), ExtractOptions(**options))
    if key not in _CACHE:
        ext = make(folder, **options)
        ext.frontend_batching = "on"
        ext.load()
        _CACHE[key] = ext
    return _CACHE[key]


def clip(num_samples: int, seed: int = 0) -> np.ndarray:
    """Noise with a slow envelope, so that frames differ along the clip."""
    rng = np.random.default_rng(seed + num_samples)
    t = np.arange(num_samples) / SAMPLE_RATE
    return (0.05 * rng.standard_normal(num_samples) * (1.2 + np.sin(2 * np.pi * 0.7 * t))).astype(np.float32)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of matching rows; two (near) zero rows count as identical."""
    a, b = a.astype(np.float64).reshape(-1, a.shape[-1]), b.astype(np.float64).reshape(-1, b.shape[-1])
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    both_zero = (na < 1e-9) & (nb < 1e-9)
    cos = (a * b).sum(-1) / np.maximum(na * nb, 1e-300)
    return np.where(both_zero, 1.0, cos)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    """Tiny models gain nothing from intra-op threads; on a busy 2-core box threads spin-wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def signals() -> list[np.ndarray]:
    return [clip(n) for n in LENGTHS]


# -- pooling ----------------------------------------------------------------------------------
def test_masked_pool_uses_true_frames_only() -> None:
    true = [np.array([[1.0, -2.0], [3.0, 0.0], [2.0, 5.0]]), np.array([[4.0, 4.0]])]
    hidden = torch.full((2, 4, 2), float("nan"))  # padding is nan: it must never leak
    hidden[0, :3] = torch.tensor(true[0])
    hidden[1, :1] = torch.tensor(true[1])
    hidden[1, 1:] = 1e9
    out = masked_pool(hidden, torch.tensor([3, 1]), POOLINGS)
    for b, frames in enumerate(true):
        np.testing.assert_allclose(out["mean"][b].numpy(), frames.mean(0))
        np.testing.assert_allclose(out["last"][b].numpy(), frames[-1])
        np.testing.assert_allclose(out["first"][b].numpy(), frames[0])
        np.testing.assert_allclose(out["max"][b].numpy(), frames.max(0))
        np.testing.assert_allclose(out["std"][b].numpy(), frames.std(0), rtol=1e-6)  # population


def test_accumulator_equals_masked_pool_on_any_cut() -> None:
    rng = np.random.default_rng(3)
    frames = torch.from_numpy(rng.standard_normal((57, 3, 5)) * 4 + 10).float()  # (T, layers, H)
    whole = masked_pool(frames.reshape(1, 57, 15), torch.tensor([57]), POOLINGS)
    acc = PoolingAccumulator(POOLINGS)
    for a, b in [(0, 1), (1, 20), (20, 21), (21, 57)]:
        acc.update(frames[a:b])
    for p, value in acc.result().items():
        np.testing.assert_allclose(value.reshape(-1).numpy(), whole[p][0].numpy(), rtol=1e-5, atol=1e-5)


def test_validate_poolings() -> None:
    assert validate_poolings(["std", "mean", "std"]) == ("mean", "std")
    with pytest.raises(ValueError, match="median.*mean, last, first, max, std"):
        validate_poolings(["mean", "median"])


# -- exactness --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", list(FAMILIES))
def test_hidden_states_match_the_models_own_output(tiny_models: dict, family: str) -> None:
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    ext = loaded(tiny_models[family], dtype="float32")
    assert ext.strategy_ == STRATEGY_BATCHED
    model = AutoModel.from_pretrained(tiny_models[family]).eval()
    features = Wav2Vec2FeatureExtractor.from_pretrained(tiny_models[family])
    for n in (400, 16_000, 36_800):
        signal = clip(n)
        ours = ext.hidden_states(signal)
        inputs = features(signal, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_values
        with torch.inference_mode():
            ref = model(inputs, output_hidden_states=True).hidden_states
        assert len(ours) == len(ref) == N_STATES
        for i, (a, r) in enumerate(zip(ours, ref)):
            assert a.shape == r[0].shape, (family, n, i)
            torch.testing.assert_close(a, r[0], atol=1e-4, rtol=1e-3, msg=f"{family} n={n} state {i}")
        assert ext.encoder_.num_frames(n) == ours[0].shape[0] == (n - 400) // 320 + 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_batched_equals_each_clip_alone(tiny_models: dict, family: str, signals: list) -> None:
    ext = loaded(tiny_models[family], poolings=POOLINGS, frames_layers=(0, 3), dtype="float32")
    batched = ext.compute_batch(signals)
    worst = 1.0
    for signal, together in zip(signals, batched):
        alone = ext.compute_batch([signal])[0]
        assert isinstance(together, dict) and isinstance(alone, dict)
        assert int(together["num_frames"]) == int(alone["num_frames"]) == max(1, (len(signal) - 400) // 320 + 1)
        for key, value in alone.items():
            if key == "num_frames":
                continue
            assert together[key].shape == value.shape, key
            cos = row_cosines(together[key], value)  # one row per layer (pooled) or frame
            worst = min(worst, float(cos.min()))
            assert cos.min() >= EXACT, (family, len(signal), key, cos.min())
    assert ext.padding_ratio > 0.5  # the batch really was padded


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("gemm", [False, True])
def test_batched_front_end_equals_each_clip_alone(tiny_models: dict, family: str, gemm: bool) -> None:
    """Conv encoder (masked group norm), projection and positional conv on a padded batch."""
    from transformers import AutoModel

    from extract.ssl import Encoder

    model = AutoModel.from_pretrained(tiny_models[family]).eval()
    encoder = Encoder(model, chunk_frames=1500)
    assert encoder.batch_frontend_problem is None
    if gemm and not encoder.enable_pos_conv_gemm():
        pytest.skip("stacked positional convs have no matmul form")
    waves = [torch.from_numpy(clip(n)) for n in LENGTHS[1:]]  # every clip >= the receptive field
    waves.insert(3, torch.from_numpy(clip(240_000, seed=5)))  # the longest is not last
    with torch.inference_mode():
        together = encoder.frontend_batch(waves)
        worst = 0.0
        for wave, front in zip(waves, together):
            alone = encoder.frontend(wave)
            assert front.shape == alone.shape == (encoder.num_frames(wave.shape[0]), 32)
            worst = max(worst, float((front - alone).abs().max()))
            assert row_cosines(front.numpy(), alone.numpy()).min() > 0.99999
    assert worst < 1e-4, (family, worst)  # about 3e-6 in float32 on CPU


def test_masked_group_norm_equals_group_norm_on_each_clip() -> None:
    from extract.ssl import Encoder

    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(6, 12, affine=True)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    lengths = [1, 7, 30, 2]
    clips = [torch.randn(12, n) * 3 + 5 for n in lengths]
    padded = torch.full((4, 12, 30), 1e6)  # padding must never enter a statistic
    for b, c in enumerate(clips):
        padded[b, :, : c.shape[1]] = c
    with torch.no_grad():
        out = Encoder.masked_group_norm(norm, padded, lengths)
        for b, c in enumerate(clips):
            torch.testing.assert_close(out[b, :, : c.shape[1]], norm(c[None])[0], atol=1e-5, rtol=1e-5)


def test_plain_padding_would_fail_the_exactness_check(tiny_models: dict) -> None:
    """The check above can fail: padding the waveforms moves group-norm outputs a lot."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_models["wav2vec2-group"]).eval()
    short, long = clip(8_000), clip(64_000)
    x = torch.zeros(2, len(long))
    x[0, : len(short)], x[1] = torch.from_numpy(short), torch.from_numpy(long)
    mask = (x != 0).long()
    with torch.inference_mode():
        padded = model(x, attention_mask=mask).last_hidden_state[0, :24]
        alone = model(torch.from_numpy(short)[None]).last_hidden_state[0]
    assert row_cosines(padded.mean(0, keepdim=True).numpy(), alone.mean(0, keepdim=True).numpy()).min() < EXACT


@pytest.mark.parametrize("family", list(FAMILIES))
def test_positional_conv_as_matmul_equals_the_conv(tiny_models: dict, family: str) -> None:
    """The CUDA path computes the grouped positional conv by unfold + bmm; check it on CPU."""
    from transformers import AutoModel

    from extract.ssl import Encoder

    model = AutoModel.from_pretrained(tiny_models[family]).eval()
    encoder = Encoder(model, chunk_frames=1500)
    if not encoder.enable_pos_conv_gemm():
        assert family == "data2vec-audio"  # five stacked convs: left to the module
        return
    for frames in (1, 2, 9, 1100):
        x = torch.randn(1, frames, 32)
        with torch.inference_mode():
            torch.testing.assert_close(encoder.pos_conv_by_gemm(x, chunk=256), model.encoder.pos_conv_embed(x))


def test_fallback_to_the_models_forward_when_the_self_check_fails(
    tiny_models: dict, signals: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    from extract.ssl import STRATEGY_FORWARD, Encoder

    def unknown_architecture(self: Encoder, wave: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no such module")

    with monkeypatch.context() as patch:
        patch.setattr(Encoder, "frontend", unknown_architecture)
        ext = make(tiny_models["wav2vec2-group"], dtype="float32")
        ext.load()
    assert ext.strategy_ == STRATEGY_FORWARD
    batch = signals[3:7] + [signals[4]]  # two clips of equal length run together
    reference = loaded(tiny_models["wav2vec2-group"], dtype="float32").compute_batch(batch)
    for a, b in zip(ext.compute_batch(batch), reference):
        assert int(a["num_frames"]) == int(b["num_frames"])
        assert row_cosines(a["pooled_mean"], b["pooled_mean"]).min() >= EXACT


def test_per_clip_front_end_when_the_batched_one_is_not_exact(
    tiny_models: dict, signals: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    from extract.ssl import Encoder

    def shifted(self: Encoder, waves: list) -> list:
        return [self.frontend(w) + 0.5 for w in waves]

    reference = loaded(tiny_models["wavlm"], dtype="float32")
    assert reference.strategy_ == STRATEGY_BATCHED
    expected = reference.compute_batch(signals)
    with monkeypatch.context() as patch:
        patch.setattr(Encoder, "frontend_batch", shifted)
        ext = make(tiny_models["wavlm"], dtype="float32")
        ext.frontend_batching = "on"
        ext.load()
        assert ext.strategy_ == STRATEGY_SPLIT
        for a, b in zip(ext.compute_batch(signals), expected):
            assert row_cosines(a["pooled_mean"], b["pooled_mean"]).min() >= EXACT


def test_long_clips_leave_the_batched_front_end(tiny_models: dict, signals: list) -> None:
    """Clips over one conv chunk run the chunked per-clip front end beside a batched group."""
    options = {"dtype": "float32", "poolings": POOLINGS, "frames_layers": (3,)}
    ext = make(tiny_models["wav2vec2-group"], **options)
    ext.conv_chunk_frames = 60  # clips over 1.2 s go alone, in chunks
    ext.frontend_batching = "on"
    ext.load()
    assert ext.strategy_ == STRATEGY_BATCHED
    reference = loaded(tiny_models["wav2vec2-group"], **options)
    for a, b in zip(ext.compute_batch(signals), reference.compute_batch(signals)):
        for key in ("pooled_mean", "pooled_std", "frames_l3"):
            assert row_cosines(a[key], b[key]).min() >= EXACT, key


def test_front_end_batching_policy(tiny_models: dict, signals: list) -> None:
    """auto: batched on CUDA only; the per-clip front end gives the same values."""
    batched = loaded(tiny_models["data2vec-audio"], dtype="float32", frames_layers=(1,))
    per_clip = make(tiny_models["data2vec-audio"], dtype="float32", frames_layers=(1,))
    per_clip.load()
    assert per_clip.strategy_ == STRATEGY_SPLIT and batched.strategy_ == STRATEGY_BATCHED
    assert per_clip.identity() == batched.identity()
    for a, b in zip(per_clip.compute_batch(signals), batched.compute_batch(signals)):
        np.testing.assert_allclose(a["frames_l1"], b["frames_l1"], atol=1e-4)
        assert row_cosines(a["pooled_mean"], b["pooled_mean"]).min() >= EXACT
    wrong = make(tiny_models["data2vec-audio"])
    wrong.frontend_batching = "yes"
    with pytest.raises(ValueError, match="frontend_batching 'yes'"):
        wrong.load()


# -- lengths ----------------------------------------------------------------------------------
def test_short_clips_warn_and_give_one_frame(tiny_models: dict) -> None:
    ext = loaded(tiny_models["wav2vec2-group"], dtype="float32")
    assert ext.warnings_for(399) and "400" in ext.warnings_for(399)[0]
    assert ext.warnings_for(400) == []
    for n in (1, 100, 399):
        out = ext.compute_batch([clip(n)])[0]
        assert isinstance(out, dict), out
        assert int(out["num_frames"]) == 1
        assert np.isfinite(out["pooled_mean"]).all()


@pytest.mark.parametrize("family", ["wav2vec2-group", "wav2vec2-layer"])
def test_chunked_conv_encoder_is_exact(tiny_models: dict, family: str) -> None:
    ext = loaded(tiny_models[family], dtype="float32")
    wave = ext.prepare(clip(60 * SAMPLE_RATE))
    with torch.inference_mode():
        whole = ext.model_.feature_extractor(wave[None]).transpose(1, 2)[0]
        chunked = ext.encoder_.conv_features(wave, chunk_frames=250)[0]
    assert chunked.shape == whole.shape == (2999, 16)
    assert row_cosines(chunked.numpy(), whole.numpy()).min() > 0.9999


def test_sixty_second_clip(tiny_models: dict) -> None:
    ext = loaded(tiny_models["wav2vec2-group"], dtype="float32", frames_layers=(3,))
    out = ext.compute_batch([clip(60 * SAMPLE_RATE)])[0]
    assert isinstance(out, dict), out
    assert int(out["num_frames"]) == 2999
    assert out["frames_l3"].shape == (2999, 32)
    assert np.isfinite(out["pooled_mean"]).all()


def test_eager_attention_long_clips_run_in_windows(tiny_models: dict) -> None:
    signal = clip(20 * SAMPLE_RATE)  # 999 frames
    options = {"dtype": "float32", "frames_layers": (3,), "poolings": POOLINGS}
    full = loaded(tiny_models["wavlm"], **options).compute_batch([signal])[0]
    ext = make(tiny_models["wavlm"], **options)
    ext.eager_max_full_frames, ext.window_frames, ext.window_context = 300, 200, 60
    ext.load()
    windowed = ext.compute_batch([signal])[0]
    assert ext.identity()["long_clips"] == {"max_full_frames": 300, "window_frames": 200, "context_frames": 60}
    assert windowed["frames_l3"].shape == full["frames_l3"].shape == (999, 32)
    # layer 0 has no attention: exact; later layers: an approximation, close on the mean
    np.testing.assert_allclose(windowed["pooled_first"][0], full["pooled_first"][0], rtol=1e-5, atol=1e-5)
    assert row_cosines(windowed["pooled_mean"], full["pooled_mean"]).min() > 0.99
    # a window covering the whole clip is the full computation
    ext.window_frames = 1000
    again = ext.compute_batch([signal])[0]
    assert row_cosines(again["pooled_std"], full["pooled_std"]).min() >= EXACT


# -- storage, errors, description --------------------------------------------------------------
def test_float16_round_trip(tiny_models: dict, signals: list) -> None:
    half = loaded(tiny_models["hubert"], poolings=POOLINGS)
    full = loaded(tiny_models["hubert"], poolings=POOLINGS, dtype="float32")
    for a, b in zip(half.compute_batch(signals[3:]), full.compute_batch(signals[3:])):
        for p in POOLINGS:
            assert a[f"pooled_{p}"].dtype == np.float16 and b[f"pooled_{p}"].dtype == np.float32
            assert row_cosines(a[f"pooled_{p}"], b[f"pooled_{p}"]).min() > 0.9999


def test_fields_describe_the_output(tiny_models: dict) -> None:
    ext = loaded(tiny_models["data2vec-audio"], layers=(3, 1), poolings=("max", "mean"), frames_layers=(2,))
    fields = ext.fields()
    assert set(fields) == {"pooled_mean", "pooled_max", "frames_l2", "num_frames"}
    assert fields["pooled_mean"].shape == (2, 32) and fields["pooled_mean"].dtype == "float16"
    assert fields["pooled_mean"].attrs == {"layers": [1, 3], "pooling": "mean"}
    assert fields["frames_l2"].ragged and fields["frames_l2"].shape == (32,)
    assert fields["num_frames"].shape == () and fields["num_frames"].dtype == "int32"
    out = ext.compute_batch([clip(16_000)])[0]
    assert set(out) == set(fields)
    for key, spec in fields.items():
        shape = out[key].shape[1:] if spec.ragged else out[key].shape
        assert shape == spec.shape and out[key].dtype == np.dtype(spec.dtype), key
    # the layer subset equals the matching rows of the all-layer run
    every = loaded(tiny_models["data2vec-audio"], poolings=("max", "mean"), dtype="float32")
    rows = every.compute_batch([clip(16_000)])[0]["pooled_max"][[1, 3]]
    assert row_cosines(out["pooled_max"], rows).min() > 0.9999


def test_a_bad_clip_does_not_sink_the_batch(tiny_models: dict) -> None:
    ext = loaded(tiny_models["wavlm"], dtype="float32")
    bad = clip(8_000)
    bad[100] = np.nan
    good = [clip(8_000), clip(12_000)]
    out = ext.compute_batch([good[0], bad, np.zeros(0, np.float32), np.zeros((2, 800), np.float32), good[1]])
    assert isinstance(out[1], ValueError) and "non-finite" in str(out[1])
    assert isinstance(out[2], ValueError) and isinstance(out[3], ValueError)
    for g, o in zip(good, (out[0], out[4])):
        alone = ext.compute_batch([g])[0]
        assert row_cosines(o["pooled_mean"], alone["pooled_mean"]).min() >= EXACT


def test_offline_missing_model_says_how_to_provide_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ext = SSLExtractor("no-such-org/no-such-ssl-model", ExtractOptions())
    with pytest.raises(ExtractorUnavailable) as info:
        ext.resolve()
    message = str(info.value)
    assert "no-such-org/no-such-ssl-model" in message and "local folder" in message
    assert "`hf download no-such-org/" in message


def test_missing_folder_and_folder_without_weights(tmp_path: Path) -> None:
    with pytest.raises(ExtractorUnavailable, match="does not exist"):
        SSLExtractor(str(tmp_path / "absent"), ExtractOptions()).resolve()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ExtractorUnavailable, match="no weights"):
        SSLExtractor(str(tmp_path), ExtractOptions()).resolve()


def test_invalid_options_name_the_value(tiny_models: dict) -> None:
    folder = tiny_models["wav2vec2-group"]
    with pytest.raises(ValueError, match="'median'.*mean"):
        make(folder, poolings=("median",))
    with pytest.raises(ValueError, match=r"layers: 4 .*0\.\.3"):
        make(folder, layers=(1, 4))
    with pytest.raises(ValueError, match=r"frames_layers: 9"):
        make(folder, frames_layers=(9,))
    with pytest.raises(ValueError, match="bfloat16.*float16, float32"):
        make(folder, dtype="bfloat16")
    with pytest.raises(ValueError, match="device 'tpu'"):
        make(folder, device="tpu")
    assert make(folder, layers=(-1, 0)).layers_ == (0, 3)


def test_identity_is_stable_and_tracks_what_changes_values(tiny_models: dict, tmp_path: Path) -> None:
    folder = tiny_models["wav2vec2-layer"]
    base = make(folder).identity()
    json.dumps(base)
    assert base == make(folder).identity()
    assert base == make(folder, layers=(0, 1, 2, 3)).identity()
    assert base["model_type"] == "wav2vec2" and len(base["weights"]["sha256"]) == 64
    assert base["normalize"] is True and base["sample_rate"] == 16_000 and base["long_clips"] == "full"
    for change in ({"layers": (3,)}, {"poolings": ("mean",)}, {"dtype": "float32"}, {"frames_layers": (2,)}):
        assert make(folder, **change).identity() != base, change
    other = build_tiny_model("wav2vec2-layer", tmp_path / "other", seed=1)
    assert make(other).identity()["weights"] != base["weights"]
    snapshot = tmp_path / "models--org--tiny" / "snapshots" / ("ab" * 20)
    shutil.copytree(folder, snapshot)
    assert make(snapshot).identity()["weights"] == {"hub_commit": "ab" * 20}
    assert make(snapshot).readable_name() == "ssl-tiny"
    assert make(tiny_models["wavlm"]).identity()["long_clips"]["max_full_frames"] == 3000


def test_normalisation_default_without_preprocessor_config(tmp_path: Path) -> None:
    group = build_tiny_model("hubert", tmp_path / "g", preprocessor=False)
    layer = build_tiny_model("data2vec-audio", tmp_path / "l", preprocessor=False)
    assert make(group).do_normalize_ is False and make(layer).do_normalize_ is True


def test_readable_name_and_registry() -> None:
    assert SSLExtractor("facebook/wav2vec2-base", ExtractOptions()).readable_name() == "ssl-wav2vec2-base"
    assert SSLExtractor("/models/My HuBERT/", ExtractOptions()).readable_name() == "ssl-my-hubert"
    assert EXTRACTORS["ssl"] is SSLExtractor and SSLExtractor.mode == "batched"


def test_plan_batches() -> None:
    ext = SSLExtractor("x", ExtractOptions(batch_seconds=10.0))
    lengths = [16_000 * s for s in (3, 1, 12, 2, 2, 0.01, 4, 1)] + [8_000] * 100
    plan = ext.plan_batches(lengths)
    assert plan == ext.plan_batches(lengths)
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
    for batch in plan:
        padded = len(batch) * max(max(lengths[i], 400) for i in batch)
        assert len(batch) <= 64 and (padded <= 10 * 16_000 or len(batch) == 1)
    assert [2] in plan  # 12 s > 10 s: alone
    flat = [lengths[i] for b in plan for i in b]
    assert flat == sorted(flat)


# -- the padded (GPU) path, run on the CPU -----------------------------------------------------
def test_device_normalisation_equals_the_per_clip_one() -> None:
    """normalise_padded (the GPU path's batched form) against prepare_wave, clip by clip."""
    from extract.ssl import normalise_padded, prepare_wave

    lengths = [1, 120, 399, 400, 8_000, 36_800]
    clips = [clip(n) * (1 + i) + 0.3 * i for i, n in enumerate(lengths)]  # different means, scales
    width = max(max(lengths), 400)
    x = torch.zeros(len(clips), width)
    for b, c in enumerate(clips):
        x[b, : len(c)] = torch.from_numpy(c)
    out = normalise_padded(x, torch.tensor(lengths)).numpy()
    for b, c in enumerate(clips):
        ref = prepare_wave(c, do_normalize=True, min_samples=400)
        np.testing.assert_allclose(out[b, : len(ref)], ref, rtol=0, atol=2e-6)
        assert not out[b, len(c):].any()  # padding stays zero


def test_stream_queues_the_next_batch_and_equals_compute_batch(tiny_models: dict, signals: list) -> None:
    ext = loaded(tiny_models["wav2vec2-group"], dtype="float32", frames_layers=(2,))
    assert ext.strategy_ == STRATEGY_BATCHED
    batches = [signals[:4], signals[4:7], [], signals[7:]]
    expected = [ext.compute_batch(b) for b in batches]
    runner, log = ext.runner_, []
    launch, complete = runner.launch, runner.complete

    def logged_launch(batch: list) -> object:
        log.append(("launch", len(batch)))
        return launch(batch)

    def logged_complete(pending: object) -> list:
        log.append(("complete", len(pending.results)))
        return complete(pending)

    runner.launch, runner.complete = logged_launch, logged_complete
    try:
        streamed = list(ext.compute_stream(iter(batches)))
    finally:
        del runner.launch, runner.complete
    sizes = [len(b) for b in batches]
    assert log == [("launch", sizes[0]), ("launch", sizes[1]), ("complete", sizes[0]),
                   ("launch", sizes[2]), ("complete", sizes[1]), ("launch", sizes[3]),
                   ("complete", sizes[2]), ("complete", sizes[3])]
    assert [len(r) for r in streamed] == sizes
    for got, want in zip(streamed, expected):
        for a, b in zip(got, want):
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])


def test_padded_path_has_no_host_conversion_per_clip(tiny_models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tensor -> Python conversions (each a device sync on CUDA) do not grow with the clips."""
    ext = loaded(tiny_models["data2vec-audio"], dtype="float32", frames_layers=(1,))
    assert ext.strategy_ == STRATEGY_BATCHED
    calls: list[str] = []
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *args: object, _name: str = name, _f: object = original) -> object:
            calls.append(_name)
            return _f(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def conversions(n_clips: int) -> list[str]:
        batch = [clip(16_000, seed=s) for s in range(n_clips)]  # equal lengths: one front-end group
        calls.clear()
        out = ext.compute_batch(batch)
        assert all(isinstance(o, dict) for o in out)
        return sorted(calls)

    few, many = conversions(2), conversions(8)
    assert few and few == many, (few, many)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tiny_models: dict, signals: list) -> None:
    for family in ("wav2vec2-group", "wavlm"):
        gpu = loaded(tiny_models[family], device="cuda", dtype="float32", frames_layers=(3,))
        cpu = loaded(tiny_models[family], device="cpu", dtype="float32", frames_layers=(3,))
        assert gpu.provenance()["compute_dtype"] == "bfloat16-autocast"
        assert gpu.encoder_.pos_conv_gemm is not None
        for a, b in zip(gpu.compute_batch(signals), cpu.compute_batch(signals)):
            assert int(a["num_frames"]) == int(b["num_frames"])
            assert row_cosines(a["pooled_mean"], b["pooled_mean"]).min() > 0.99, family
            assert row_cosines(a["frames_l3"], b["frames_l3"]).mean() > 0.98, family


def per_clip_forward_pooled(ext: SSLExtractor, signal: np.ndarray) -> dict[str, np.ndarray]:
    """The reference: the model's own forward on one clip (same device and autocast)."""
    with torch.inference_mode(), ext.autocast():
        states = ext.model_(ext.prepare(signal)[None], output_hidden_states=True).hidden_states
    stacked = torch.stack([h[0].float() for h in states], dim=0).cpu()  # (layers, T, H)
    return {"pooled_mean": stacked.mean(1).numpy(), "pooled_last": stacked[:, -1].numpy()}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_cuda_batched_equals_the_per_clip_forward_in_bf16(tiny_models: dict, signals: list, family: str) -> None:
    """What the GPU path stores equals the model's own per-clip forward (cosine >= 0.999)."""
    ext = loaded(tiny_models[family], device="cuda", dtype="float32")
    ext.frontend_batching = "auto"
    assert ext.strategy_ == STRATEGY_BATCHED
    for signal, got in zip(signals, ext.compute_batch(signals)):
        ref = per_clip_forward_pooled(ext, signal)
        for key, want in ref.items():
            cos = row_cosines(got[key], want)
            assert cos.min() >= 0.999, (family, len(signal), key, cos.min())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_base_size_model_equals_the_per_clip_forward(tmp_path: Path) -> None:
    """A random base-size wav2vec2 (the real compute), wav lengths of a corpus: cosine >= 0.999."""
    from extract.untrained import make_untrained_wav2vec2

    folder = make_untrained_wav2vec2(tmp_path / "base", size="base")
    ext = make(folder, device="cuda", dtype="float32")
    ext.load()
    assert ext.strategy_ == STRATEGY_BATCHED
    batch = [clip(n, seed=3) for n in (4_000, 16_000, 24_000, 40_000, 64_000, 96_000)]
    for signal, got in zip(batch, ext.compute_batch(batch)):
        ref = per_clip_forward_pooled(ext, signal)
        for key, want in ref.items():
            assert row_cosines(got[key], want).min() >= 0.999, (len(signal), key)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("family", ["wav2vec2-group", "wav2vec2-layer", "hubert", "data2vec-audio"])
def test_cuda_batch_loop_never_waits_for_the_device(tiny_models: dict, signals: list, family: str) -> None:
    """Under sync debug mode "error" any implicit host sync (.item(), a blocking copy, ...) raises;
    the stream's only wait is one CUDA event per batch (not flagged). WavLM is left out: its
    eager attention is transformers' code."""
    ext = loaded(tiny_models[family], device="cuda", dtype="float32", frames_layers=(2,))
    ext.frontend_batching = "auto"
    batches = [signals[:5], signals[5:8], signals[8:]]
    expected = [ext.compute_batch(b) for b in batches]  # warm-up: caches, pinned blocks
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        streamed = list(ext.compute_stream(iter(batches)))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for got, want in zip(streamed, expected):
        for a, b in zip(got, want):
            assert isinstance(a, dict), a  # an error raised by the debug mode ends up here
            assert row_cosines(a["pooled_mean"], b["pooled_mean"]).min() >= EXACT
