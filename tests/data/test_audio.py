"""load_audio / audio_info / file_hash on files written in tmp_path."""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import soundfile as sf

from data.audio import SAMPLE_RATE, AudioError, audio_info, duration_seconds, file_hash, load_audio


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize(
    "subtype, tol",
    [("PCM_U8", 1e-2), ("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-6), ("FLOAT", 1e-7)],
)
def test_wav_subtypes_decode_to_float32(tmp_path, subtype, tol):
    path = tmp_path / f"{subtype}.wav"
    x = tone(0.5, SAMPLE_RATE)
    sf.write(path, x, SAMPLE_RATE, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1 and y.shape == (8000,)
    np.testing.assert_allclose(y, x, atol=tol)


@pytest.mark.parametrize("fmt, suffix", [("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_compressed_formats(tmp_path, fmt, suffix):
    path = tmp_path / f"clip.{suffix}"
    sf.write(path, tone(1.0, SAMPLE_RATE), SAMPLE_RATE, format=fmt)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    # lossy codecs may pad a few milliseconds
    assert abs(len(y) - SAMPLE_RATE) < 0.05 * SAMPLE_RATE
    assert 0.2 < np.sqrt(np.mean(y**2)) < 0.5


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_resampled_to_16k_with_right_length(tmp_path, rate):
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, tone(1.25, rate), rate, subtype="PCM_16")
    y = load_audio(path)
    assert abs(len(y) - 20000) <= 1
    # a 440 Hz tone stays a 440 Hz tone
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(y) - 440.0) < 2.0


def test_other_output_rate(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(1.0, 16000), 16000)
    assert len(load_audio(path, sample_rate=8000)) == 8000
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(path, sample_rate=0)


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_averaged(tmp_path, channels):
    path = tmp_path / f"c{channels}.wav"
    x = np.zeros((16000, channels))
    x[:, 0] = 0.6
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(path)
    assert y.shape == (16000,)
    np.testing.assert_allclose(y, 0.6 / channels, atol=1e-6)


def test_silent_and_very_short_clips_are_returned(tmp_path):
    silent, short = tmp_path / "silent.wav", tmp_path / "short.wav"
    sf.write(silent, np.zeros(16000), SAMPLE_RATE)
    sf.write(short, np.full(3, 0.1), SAMPLE_RATE)
    assert not load_audio(silent).any()
    assert len(load_audio(short)) == 3


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="not found") as info:
        load_audio(path)
    assert info.value.path == str(path) and "check the path" in str(info.value)
    with pytest.raises(AudioError):
        audio_info(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="0 bytes") as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 10)
    with pytest.raises(AudioError, match="16-bit wav") as info:
        load_audio(path)
    assert str(path) in str(info.value)
    with pytest.raises(AudioError, match="header"):
        audio_info(path)


def test_truncated_wav_header(tmp_path):
    full, cut = tmp_path / "full.wav", tmp_path / "cut.wav"
    sf.write(full, tone(1.0, SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    cut.write_bytes(full.read_bytes()[:20])
    with pytest.raises(AudioError) as info:
        load_audio(cut)
    assert str(cut) in str(info.value)


def test_truncated_wav_data(tmp_path):
    full, cut = tmp_path / "full.wav", tmp_path / "cut.wav"
    sf.write(full, tone(1.0, SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated") as info:
        load_audio(cut)
    assert str(cut) in str(info.value)
    assert len(load_audio(full)) == SAMPLE_RATE


def test_truncated_flac(tmp_path):
    full, cut = tmp_path / "full.flac", tmp_path / "cut.flac"
    sf.write(full, np.random.default_rng(0).uniform(-0.5, 0.5, 16000), SAMPLE_RATE)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError) as info:
        load_audio(cut)
    assert str(cut) in str(info.value)


def test_zero_samples(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0), SAMPLE_RATE)
    with pytest.raises(AudioError, match="0 samples") as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_nan_and_inf_samples(tmp_path):
    path = tmp_path / "nan.wav"
    x = np.zeros(1000)
    x[[3, 10]] = np.nan
    x[20] = np.inf
    sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match="3 of 1000 samples are NaN or Inf") as info:
        load_audio(path)
    assert str(path) in str(info.value) and "fix the file" in str(info.value)


def test_audio_error_pickles():
    err = pickle.loads(pickle.dumps(AudioError("/x/y.wav", "broken; re-export it")))
    assert err.path == "/x/y.wav" and err.reason == "broken; re-export it"
    assert isinstance(err, ValueError) and "/x/y.wav" in str(err)


def test_audio_info_and_duration(tmp_path):
    path = tmp_path / "st.wav"
    sf.write(path, tone(1.5, 22050, channels=2), 22050)
    assert audio_info(path) == (33075, 22050, 2)
    assert duration_seconds(path) == pytest.approx(1.5)


def test_file_hash_is_a_stable_content_hash(tmp_path):
    a, b, c = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav"
    sf.write(a, tone(1.0, SAMPLE_RATE), SAMPLE_RATE)
    b.write_bytes(a.read_bytes())
    sf.write(c, tone(1.0, SAMPLE_RATE, freq=441.0), SAMPLE_RATE)
    assert file_hash(a) == file_hash(a) == file_hash(b) != file_hash(c)
    assert file_hash(a) == hashlib.blake2b(a.read_bytes(), digest_size=16).hexdigest()
    assert len(file_hash(a)) == 32


def test_file_hash_reads_in_blocks(tmp_path):
    path = tmp_path / "big.bin"
    data = np.random.default_rng(1).bytes(3 * (1 << 20) + 123)
    path.write_bytes(data)
    assert file_hash(path) == hashlib.blake2b(data, digest_size=16).hexdigest()
    with pytest.raises(AudioError, match="not found"):
        file_hash(tmp_path / "missing.wav")
