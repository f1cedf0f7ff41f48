"""Tests for extract/melspec.py: the spec options, the set's key, and values against a direct
computation written out here (explicit Hann window, full DFT, triangles built band by band)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from extract.base import ExtractOptions
from extract.melspec import (HOP, WIN, LogMelParams, log_mel, minmax_normalise,
                             parse_logmel_arg)
from extract.run import prepare_extractor

SR = 16_000


def _key(spec: str) -> str:
    return prepare_extractor(spec, ExtractOptions())[1].key


def _direct_log_mel(x: np.ndarray, n_mels: int, win: int, hop: int) -> np.ndarray:
    """Centred frames, periodic Hann, |DFT|^2, HTK-mel triangles (area 1 per band), log(+1e-6)."""
    x = np.concatenate([np.zeros(win // 2), np.asarray(x, np.float64), np.zeros(win // 2)])
    if len(x) < win:
        x = np.concatenate([x, np.zeros(win - len(x))])
    n_frames = 1 + (len(x) - win) // hop
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / win) for n in range(win)])
    n_bins = win // 2 + 1
    freqs = np.arange(n_bins) * (SR / 2) / (n_bins - 1)
    mel = lambda f: 2595.0 * math.log10(1 + f / 700.0)  # noqa: E731
    inv = lambda m: 700.0 * (10 ** (m / 2595.0) - 1)  # noqa: E731
    edges = [inv(mel(8000.0) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    bank = np.zeros((n_mels, n_bins))
    for b in range(n_mels):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        for j, f in enumerate(freqs):
            if lo < f <= mid:
                bank[b, j] = (f - lo) / (mid - lo)
            elif mid < f < hi:
                bank[b, j] = (hi - f) / (hi - mid)
        bank[b] *= 2.0 / (hi - lo)
    out = np.empty((n_frames, n_mels))
    for t in range(n_frames):
        spectrum = np.fft.fft(x[t * hop:t * hop + win] * window)[:n_bins]
        out[t] = np.log(bank @ (np.abs(spectrum) ** 2) + 1e-6)
    return out


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """0.3 s: a 440 Hz tone plus noise and a DC offset (min-max normalisation moves it)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(0.3 * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size) + 0.1).astype(np.float32)


def test_default_key_is_unchanged() -> None:
    """The keys of sets stored before the options existed (pinned from the earlier code)."""
    assert _key("logmel:64") == "logmel-64-6933cb39e8e7"
    assert _key("logmel:128") == "logmel-128-71a0cf69f61b"
    assert _key("logmel:64,hop_ms=24,win_ms=64,norm=none") == _key("logmel:64")


def test_options_change_the_key() -> None:
    keys = {_key(s) for s in ("logmel:64", "logmel:64,hop_ms=4.88", "logmel:64,hop_ms=4.88,win_ms=32",
                              "logmel:64,norm=minmax", "logmel:64,hop_ms=4.88,norm=minmax")}
    assert len(keys) == 5
    assert _key("logmel:64,hop_ms=4.88,win_ms=32") == "logmel-64-hop4.875ms-win32ms-" + \
        _key("logmel:64,hop_ms=4.88,win_ms=32").rsplit("-", 1)[1]
    assert _key("logmel:128,norm=minmax").startswith("logmel-128-minmax-")


def test_parse() -> None:
    assert parse_logmel_arg("128") == LogMelParams(128, WIN, HOP, "none")
    # seed 003: 512 frames in 2.5 s -> 4.88 ms = 78 samples
    assert parse_logmel_arg("64,hop_ms=4.88,win_ms=32,norm=minmax") == LogMelParams(64, 512, 78, "minmax")
    assert int(2.5 * SR) // 78 == 512  # hops in a 2.5 s crop: the paper's 64 x 512


@pytest.mark.parametrize(("arg", "match"), [
    ("7", "between 8 and 256"), ("64,hop=5", "unknown option"), ("64,hop_ms=fast", "milliseconds"),
    ("64,hop_ms=0.01", "at least one sample"), ("64,win_ms=10", "at least hop_ms"),
    ("64,norm=peak", "norm must be one of"), ("64,hop_ms=5,hop_ms=6", "twice"),
    ("128,hop_ms=2,win_ms=4", "without an FFT bin"),
])
def test_bad_specs_name_the_problem(arg: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_logmel_arg(arg)
    with pytest.raises(ValueError, match=match):
        prepare_extractor(f"logmel:{arg}", ExtractOptions())


@pytest.mark.parametrize(("n_mels", "win", "hop"), [(128, WIN, HOP), (64, 512, 78), (64, 400, 78)])
def test_values_equal_a_direct_computation(clip: np.ndarray, n_mels: int, win: int, hop: int) -> None:
    got = log_mel(clip, n_mels, win=win, hop=hop)
    want = _direct_log_mel(clip, n_mels, win, hop)
    assert got.shape == want.shape == (1 + len(clip) // hop, n_mels)
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-4)


def test_extractor_computes_what_its_spec_says(clip: np.ndarray) -> None:
    ex, header = prepare_extractor("logmel:64,hop_ms=4.88,win_ms=32,norm=minmax", ExtractOptions())
    got = ex.compute(clip)["logmel"]
    scaled = 2 * (clip.astype(np.float64) - clip.min()) / (clip.max() - clip.min()) - 1
    np.testing.assert_allclose(got, _direct_log_mel(scaled, 64, 512, 78), atol=2e-3, rtol=1e-4)
    assert header.fields["logmel"].attrs["hop_ms"] == 4.875 and header.fields["logmel"].attrs["norm"] == "minmax"
    default, _ = prepare_extractor("logmel:64", ExtractOptions())
    np.testing.assert_array_equal(default.compute(clip)["logmel"], log_mel(clip, 64))


def test_minmax_removes_gain_and_offset(clip: np.ndarray) -> None:
    y = minmax_normalise(clip)
    assert float(y.min()) == pytest.approx(-1.0) and float(y.max()) == pytest.approx(1.0)
    louder = 3.0 * clip - 0.2
    np.testing.assert_allclose(log_mel(louder, 64, norm="minmax"), log_mel(clip, 64, norm="minmax"),
                               atol=1e-3)
    assert np.abs(log_mel(louder, 64) - log_mel(clip, 64)).max() > 1.0  # without it, gain stays in
    assert not minmax_normalise(np.full(100, 0.5, np.float32)).any()  # constant clip: zeros
