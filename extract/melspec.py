"""Log-mel spectrograms (``logmel:128``): frame sequences for the CNN heads.

Defaults follow seed 001 (Belanich et al. 2022, Sec. 2.1): 64 ms Hann window, 24 ms hop, mel
bands spanning 0 to 8 kHz (Slaney-style triangular filters on the HTK mel scale), natural log of
power + 1e-6. Options after the band count, comma separated, all part of the set's key:

* ``hop_ms=X``: frame step in ms (rounded to whole samples at 16 kHz); default 24.
* ``win_ms=Y``: window and FFT length in ms (rounded to whole samples); default 64; >= hop.
* ``norm=minmax``: rescale each waveform to [-1, 1] with its own minimum and maximum before the
  log-mel (seed 001: "normalize the signal between -1 and 1 by re-scaling using the maximum and
  minimum values"); default ``none``.

Seed 003 (Song et al. 2022) uses 64 x 512 spectrograms for 2.5 s crops: ``logmel:64,hop_ms=4.88``
(78 samples, 512 frames in 2.5 s). A spec equal to the defaults (``logmel:64,hop_ms=24``) has the
key of ``logmel:64``, so stores made before these options stay valid.

Example:
    >>> parse_logmel_arg("64,hop_ms=4.88,win_ms=32")
    LogMelParams(n_mels=64, win=512, hop=78, norm='none')
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from extract.base import SAMPLE_RATE, Extractor, FieldSpec, register_extractor

WIN = 1024   # 64 ms at 16 kHz
HOP = 384    # 24 ms
FMAX = 8000.0
NORMS = ("none", "minmax")
"""Waveform normalisations before the log-mel."""
OPTION_KEYS = ("hop_ms", "win_ms", "norm")


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


def minmax_normalise(signal: np.ndarray) -> np.ndarray:
    """``2 (x - min) / (max - min) - 1``: the clip spans [-1, 1]; a constant clip becomes zeros."""
    x = np.asarray(signal, dtype=np.float64)
    if x.size == 0:
        return x.astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 0.0:
        return np.zeros_like(x, dtype=np.float32)
    return (2.0 * (x - lo) / (hi - lo) - 1.0).astype(np.float32)


def log_mel(signal: np.ndarray, n_mels: int = 128, *, win: int = WIN, hop: int = HOP,
            norm: str = "none") -> np.ndarray:
    """Log-mel spectrogram of a 16 kHz signal: (frames, n_mels) float32.

    The signal (min-max normalised first when ``norm = "minmax"``) is zero-padded to at least
    one window; frames are centred by padding ``win // 2`` zeros at both ends.

    Raises:
        ValueError: ``norm`` is not one of :data:`NORMS`.
    """
    if norm not in NORMS:
        raise ValueError(f"logmel: norm must be one of {NORMS}; got {norm!r}")
    x = minmax_normalise(signal) if norm == "minmax" else np.asarray(signal, dtype=np.float32)
    x = np.pad(x, (win // 2, win // 2))
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    n_frames = 1 + (len(x) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = x[idx] * np.hanning(win + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, win//2+1)
    return np.log(power @ mel_filterbank(n_mels, win).T + 1e-6).astype(np.float32)


@dataclass(frozen=True)
class LogMelParams:
    """What a ``logmel:`` spec asks for: bands, window and hop in samples, normalisation."""

    n_mels: int
    win: int = WIN
    hop: int = HOP
    norm: str = "none"


def _ms_option(key: str, value: str, spec: str) -> int:
    try:
        ms = float(value)
    except ValueError:
        raise ValueError(f"logmel: {key} must be a number of milliseconds, e.g. logmel:64,{key}=4.88; "
                         f"got {value!r} in {spec!r}") from None
    samples = int(round(ms * SAMPLE_RATE / 1000.0))
    if not np.isfinite(ms) or samples < 1:
        raise ValueError(f"logmel: {key} must be at least one sample (1/16 ms); got {value!r} in {spec!r}")
    return samples


def parse_logmel_arg(arg: str) -> LogMelParams:
    """``"64,hop_ms=4.88,win_ms=32,norm=minmax"`` -> :class:`LogMelParams`.

    Raises:
        ValueError: a band count outside 8..256, an unknown option (lists the valid ones), a
            value that is not a number / not a valid choice, a window shorter than the hop, or a
            window so short that a mel band gets no FFT bin.
    """
    spec = f"logmel:{arg}"
    head, *items = [s.strip() for s in arg.split(",")]
    if not head.isdigit() or not 8 <= int(head) <= 256:
        raise ValueError(f"logmel needs a band count between 8 and 256, e.g. logmel:128 or "
                         f"logmel:64,hop_ms=4.88; got {head!r} in {spec!r}")
    values: dict[str, Any] = {}
    seen: set[str] = set()
    for item in items:
        key, sep, value = (p.strip() for p in item.partition("="))
        if not sep or key not in OPTION_KEYS:
            raise ValueError(f"logmel: unknown option {item!r} in {spec!r}; valid options: "
                             f"{', '.join(k + '=...' for k in OPTION_KEYS)}")
        if key in seen:
            raise ValueError(f"logmel: option {key} is given twice in {spec!r}")
        seen.add(key)
        if key == "norm":
            if value not in NORMS:
                raise ValueError(f"logmel: norm must be one of {NORMS}; got {value!r} in {spec!r}")
            values["norm"] = value
        else:
            values["hop" if key == "hop_ms" else "win"] = _ms_option(key, value, spec)
    p = LogMelParams(int(head), **values)
    if p.win < p.hop:
        raise ValueError(f"logmel: win_ms ({p.win / 16:g} ms) must be at least hop_ms ({p.hop / 16:g} ms) "
                         f"in {spec!r}")
    empty = int((mel_filterbank(p.n_mels, p.win).sum(axis=1) <= 0).sum())
    if empty:
        raise ValueError(f"logmel: a {p.win / 16:g} ms window leaves {empty} of {p.n_mels} mel bands "
                         f"without an FFT bin in {spec!r}; use a longer win_ms or fewer bands")
    return p


@register_extractor
class LogMelExtractor(Extractor):
    """``logmel:N[,hop_ms=X][,win_ms=Y][,norm=minmax]``: N-band log-mel frames (ragged
    field ``logmel``)."""

    name = "logmel"
    mode = "per_clip"

    @property
    def params(self) -> LogMelParams:
        """The parsed spec (raises ValueError on a bad one, see :func:`parse_logmel_arg`)."""
        return parse_logmel_arg(self.arg)

    def resolve(self) -> None:
        self.params  # noqa: B018 (validates)

    def identity(self) -> dict[str, Any]:
        p = self.params
        ident: dict[str, Any] = {"extractor": "logmel", "n_mels": p.n_mels, "win": p.win,
                                 "hop": p.hop, "fmax": FMAX, "sample_rate": SAMPLE_RATE}
        if p.norm != "none":  # absent by default: the key of the sets stored before the option
            ident["norm"] = p.norm
        return ident

    def readable_name(self) -> str:
        p = self.params
        name = f"logmel-{p.n_mels}"
        if p.hop != HOP:
            name += f"-hop{p.hop / 16:g}ms"
        if p.win != WIN:
            name += f"-win{p.win / 16:g}ms"
        if p.norm != "none":
            name += f"-{p.norm}"
        return name

    def fields(self) -> dict[str, FieldSpec]:
        p = self.params
        return {"logmel": FieldSpec((p.n_mels,), "float32", True,
                                    {"win_ms": p.win / 16, "hop_ms": p.hop / 16, "fmax": FMAX,
                                     "norm": p.norm})}

    def provenance(self) -> dict[str, Any]:
        return {"numpy": np.__version__, "device": "cpu", "dtype": "float32"}

    def compute(self, signal: np.ndarray) -> dict[str, np.ndarray]:
        p = self.params
        return {"logmel": log_mel(signal, p.n_mels, win=p.win, hop=p.hop, norm=p.norm)}
