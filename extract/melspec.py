"""Log-mel spectrograms (``logmel:128``): frame sequences for the CNN heads.

Defaults follow seed 001 of the field notes: 64 ms Hann window, 24 ms hop, mel bands spanning
0 to 8 kHz (Slaney-style triangular filters on the HTK mel scale), natural log of power + 1e-6.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from extract.base import SAMPLE_RATE, Extractor, FieldSpec, register_extractor

WIN = 1024   # 64 ms at 16 kHz
HOP = 384    # 24 ms
FMAX = 8000.0


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale. >>> float(hz_to_mel(1000.0)).__round__(1)
    1000.0
    """
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, n_fft: int = WIN, sr: int = SAMPLE_RATE, fmax: float = FMAX
                   ) -> np.ndarray:
    """Triangular filters, area-normalised: shape (n_mels, n_fft // 2 + 1)."""
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= (2.0 / (upper - lower))
    return fb.astype(np.float32)


def log_mel(signal: np.ndarray, n_mels: int = 128) -> np.ndarray:
    """Log-mel spectrogram of a 16 kHz signal: (frames, n_mels) float32.

    The signal is zero-padded to at least one window; frames are centred by padding
    ``WIN // 2`` zeros at both ends.
    """
    x = np.pad(np.asarray(signal, dtype=np.float32), (WIN // 2, WIN // 2))
    if len(x) < WIN:
        x = np.pad(x, (0, WIN - len(x)))
    n_frames = 1 + (len(x) - WIN) // HOP
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n_frames)[:, None]
    frames = x[idx] * np.hanning(WIN + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, WIN//2+1)
    return np.log(power @ mel_filterbank(n_mels).T + 1e-6).astype(np.float32)


@register_extractor
class LogMelExtractor(Extractor):
    """``logmel:N``: N-band log-mel spectrogram frames (ragged field ``logmel``)."""

    name = "logmel"
    mode = "per_clip"

    def resolve(self) -> None:
        if not self.arg.isdigit() or not 8 <= int(self.arg) <= 256:
            raise ValueError(f"logmel needs a band count between 8 and 256, e.g. logmel:128; "
                             f"got {self.arg!r}")

    def identity(self) -> dict[str, Any]:
        return {"extractor": "logmel", "n_mels": int(self.arg), "win": WIN, "hop": HOP,
                "fmax": FMAX, "sample_rate": SAMPLE_RATE}

    def readable_name(self) -> str:
        return f"logmel-{self.arg}"

    def fields(self) -> dict[str, FieldSpec]:
        return {"logmel": FieldSpec((int(self.arg),), "float32", True,
                                    {"win_ms": 64, "hop_ms": 24, "fmax": FMAX})}

    def provenance(self) -> dict[str, Any]:
        return {"numpy": np.__version__, "device": "cpu", "dtype": "float32"}

    def compute(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        return {"logmel": log_mel(signal, int(self.arg))}
