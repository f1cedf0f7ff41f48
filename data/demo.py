"""A small, deterministic demo corpus in the A-VB 2022 layout, with learnable labels.

Each clip is a synthetic vocal burst made from a handful of latent parameters: fundamental
frequency and its contour (glide and vibrato), loudness, amplitude pulses (laugh/pant-like),
noisiness (harmonic-to-noise mix), duration and spectral tilt (a low-pass). Each of the 8
vocalisation types draws its parameters from its own region, with overlap. The labels are
known functions of those parameters:

* the 10 emotions, Valence and Arousal: a sigmoid of a fixed linear combination of the
  standardised parameters, plus label noise, clipped to [0, 1];
* culture columns: the emotion values with a small country-specific scale and shift;
* country shifts the spectral tilt and f0; age lowers f0 (older speakers lower).

So acoustic features (e.g. eGeMAPS functionals) with a linear head learn them well but not
perfectly. Splits are by subject (about 50/25/25); Test rows have empty labels.

Example:
    >>> import tempfile
    >>> root = make_demo_corpus(tempfile.mkdtemp(), n_clips=16)
    >>> sorted(p.name for p in (root / "labels").iterdir())[:2]
    ['culture_info.csv', 'data_info.csv']
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from data.tasks import COUNTRIES, CULTURE_COLUMNS, EMOTIONS, TWO_COLUMNS, VOC_TYPES

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
MIN_CLIPS = 8
"""Fewest clips that still give every type and every split."""

_FIRST_ID = 10_000

# Per-type parameter regions: mean and spread of each latent parameter.
#   st:     f0 in semitones re 200 Hz        loud:  RMS level in dBFS
#   rate:   pulse rate in Hz                  depth: pulse depth 0..1
#   noise:  noise share of the mix 0..1       dur:   seconds
#   tilt:   low-pass cutoff, octaves re 2 kHz glide: f0 change over the clip, semitones
#   vib:    vibrato depth in semitones
# The noise share is capped at 0.7 so every burst keeps some voicing: openSMILE's voiced-only
# functionals are unstable on clips with a handful of voiced frames.
@dataclass(frozen=True)
class _Region:
    st: tuple[float, float]
    loud: tuple[float, float]
    rate: tuple[float, float]
    depth: tuple[float, float]
    noise: tuple[float, float]
    dur: tuple[float, float]
    tilt: tuple[float, float]
    glide: tuple[float, float]
    vib: tuple[float, float]


_REGIONS = {
    "Gasp": _Region((4, 3), (-22, 3), (3, 1), (0.1, 0.1), (0.65, 0.05), (0.6, 0.1), (1.2, 0.4), (6, 2), (0.2, 0.2)),
    "Laugh": _Region((3, 3), (-17, 3), (5, 0.8), (0.85, 0.1), (0.35, 0.15), (1.6, 0.5), (0.5, 0.4), (-2, 2), (0.3, 0.3)),
    "Cry": _Region((9, 3), (-20, 3), (2, 1), (0.2, 0.15), (0.3, 0.15), (2.1, 0.5), (0.2, 0.4), (-3, 2), (1.5, 0.5)),
    "Scream": _Region((16, 3), (-12, 3), (2, 1), (0.1, 0.1), (0.2, 0.15), (1.3, 0.4), (1.4, 0.4), (1, 2), (0.6, 0.4)),
    "Grunt": _Region((-12, 3), (-16, 3), (2, 1), (0.1, 0.1), (0.2, 0.1), (0.6, 0.1), (-0.6, 0.4), (-1, 1), (0.2, 0.2)),
    "Groan": _Region((-6, 3), (-23, 3), (2, 1), (0.15, 0.1), (0.45, 0.1), (2.0, 0.5), (-1.3, 0.4), (-5, 2), (0.6, 0.3)),
    "Pant": _Region((0, 3), (-26, 3), (1.8, 0.4), (0.9, 0.08), (0.66, 0.04), (2.2, 0.5), (0.3, 0.4), (0, 2), (0.2, 0.2)),
    "Other": _Region((2, 6), (-20, 4), (3, 1.5), (0.4, 0.3), (0.4, 0.2), (1.5, 0.6), (0.2, 0.8), (0, 3), (0.5, 0.4)),
}

_PARAMS = ("st", "loud", "pulse", "noise", "dur", "tilt", "glide", "vib")  # pulse = depth x rate
# Rough centre and spread of each parameter over the corpus, to standardise before labelling.
_CENTRE = np.array([2.0, -20.0, 0.45, 0.45, 1.5, 0.3, -0.6, 0.5])
_SCALE = np.array([8.0, 4.5, 0.35, 0.25, 0.6, 0.9, 3.0, 0.5])

# Label = sigmoid(bias + weights . standardised params) + noise. Columns follow _PARAMS.
_EMOTION_WEIGHTS = {
    "Awe": (-0.3, -0.8, -0.5, 0.9, 0.4, 0.2, 0.6, 0.0),
    "Excitement": (0.8, 1.0, 0.6, -0.2, 0.0, 0.4, 0.5, 0.0),
    "Amusement": (0.0, 0.3, 1.6, 0.0, 0.0, 0.0, -0.3, -0.3),
    "Awkwardness": (-0.6, -0.9, 0.5, 0.0, -0.3, -0.4, 0.0, 0.0),
    "Fear": (0.8, 0.0, -0.5, 0.8, 0.0, 0.6, 0.4, 0.3),
    "Horror": (0.9, 1.0, -0.6, 0.3, 0.0, 0.5, 0.0, 0.3),
    "Distress": (0.6, 0.2, -0.5, 0.0, 0.3, 0.0, -0.4, 1.2),
    "Triumph": (0.4, 1.2, 0.0, -0.8, 0.0, 0.3, 0.8, 0.0),
    "Sadness": (-0.2, -0.9, -0.4, 0.0, 0.4, -0.6, -0.7, 1.0),
    "Surprise": (0.6, 0.3, -0.3, 0.7, -0.8, 0.5, 0.9, 0.0),
}
_EMOTION_BIAS = -0.8
_GAIN = 0.7
_TWO_WEIGHTS = {
    "Valence": (0.0, 0.2, 1.2, -0.5, 0.0, 0.2, 0.5, -0.8),
    "Arousal": (0.9, 1.3, 0.4, 0.0, -0.3, 0.5, 0.0, 0.0),
}
_LABEL_NOISE = 0.1

# Country: acoustic shift (tilt octaves, f0 semitones, formant scale) and rating style
# (scale, shift of the culture columns).
_COUNTRY_ACOUSTIC = {
    "China": (0.3, 1.5, 0.91),
    "United States": (0.0, 0.0, 0.97),
    "South Africa": (-0.3, -1.0, 1.03),
    "Venezuela": (0.15, -2.0, 1.09),
}
_COUNTRY_RATING = {
    "China": (0.85, -0.02),
    "United States": (1.0, 0.03),
    "South Africa": (1.1, 0.0),
    "Venezuela": (0.95, 0.05),
}
_AGE_ST_PER_YEAR = -0.3  # f0 drops with age (semitones per year)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _draw_params(rng: np.random.Generator, voc_type: str, country: str, age: float, speaker_st: float) -> dict:
    r = _REGIONS[voc_type]
    tilt_shift, st_shift, formant = _COUNTRY_ACOUSTIC[country]
    return {
        "st": rng.normal(*r.st) + st_shift + speaker_st + _AGE_ST_PER_YEAR * (age - 30.0),
        "loud": rng.normal(*r.loud),
        "rate": float(np.clip(rng.normal(*r.rate), 1.0, 8.0)),
        "depth": float(np.clip(rng.normal(*r.depth), 0.0, 0.98)),
        "noise": float(np.clip(rng.normal(*r.noise), 0.02, 0.7)),
        "dur": float(np.clip(rng.normal(*r.dur), 0.5, 3.0)),
        "tilt": rng.normal(*r.tilt) + tilt_shift,
        "glide": rng.normal(*r.glide),
        "vib": float(abs(rng.normal(*r.vib))),
        # Voice quality: older speakers have more jitter and shimmer.
        "jitter": (0.004 + 0.0015 * (age - 20.0)) * (0.85 + 0.3 * rng.random()),
        "shimmer": (0.03 + 0.02 * (age - 20.0)) * (0.85 + 0.3 * rng.random()),
        "formant": formant * float(np.exp(rng.normal(0.0, 0.03))),
    }


def _standardised(p: dict) -> np.ndarray:
    raw = np.array(
        [p["st"], p["loud"], p["depth"] * min(p["rate"], 6.0) / 6.0 * 1.5, p["noise"], p["dur"], p["tilt"], p["glide"], p["vib"]]
    )
    return (raw - _CENTRE) / _SCALE


def _resonator(freq: float, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-pole resonance (a formant) with unit gain at DC."""
    r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    a = np.array([1.0, -2 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r])
    return np.array([a.sum()]), a


# Formants of an open vowel; every burst passes through them, as a vocal tract would.
_FORMANTS = ((750.0, 160.0), (1250.0, 200.0), (2600.0, 300.0))
_HIGHPASS = 150.0  # Hz; microphone/room roll-off, keeps the lowest band shaped like a voice


def _synthesise(rng: np.random.Generator, p: dict) -> np.ndarray:
    """Render one burst from its parameters -> float32 (samples,) at 16 kHz."""
    sr = SAMPLE_RATE
    n = int(round(p["dur"] * sr))
    t = np.arange(n) / sr
    u = t / p["dur"]
    # f0 contour: base + linear glide + vibrato at 5-7 Hz + jitter (cycle-to-cycle wobble).
    vib_rate = 5.0 + 2.0 * rng.random()
    st = p["st"] + p["glide"] * (u - 0.5) + p["vib"] * np.sin(2 * np.pi * vib_rate * t)
    # Jitter and shimmer change from one glottal cycle to the next: hold each draw one period.
    period = max(1, int(sr / (200.0 * 2.0 ** (p["st"] / 12.0))))
    per_cycle = rng.standard_normal((2, n // period + 1))
    wobble = np.repeat(per_cycle[0], period)[:n] * p["jitter"]
    f0 = np.clip(200.0 * 2.0 ** (st / 12.0) * (1.0 + wobble), 60.0, 1400.0)
    phase = 2 * np.pi * np.cumsum(f0) / sr + rng.random() * 2 * np.pi
    # Band-limited pulse train: sum_{k=1..K} cos(k phase) in closed form (Dirichlet kernel).
    k_max = max(1, int(7600.0 // f0.max()))
    half = np.sin(phase / 2)
    safe = np.where(np.abs(half) < 1e-6, 1.0, half)
    pulse = np.where(np.abs(half) < 1e-6, k_max + 0.5, np.sin((k_max + 0.5) * phase) / (2 * safe)) - 0.5
    # Glottal roll-off, about -12 dB/octave above f0: keeps H1 above H2 as in natural voice.
    a_src = np.exp(-2 * np.pi * float(np.clip(np.median(f0), 100.0, 500.0)) / sr)
    pulse = lfilter([(1 - a_src) ** 2], [1, -2 * a_src, a_src**2], pulse)
    pulse *= np.exp(p["shimmer"] * np.repeat(per_cycle[1], period)[:n])
    noise = rng.standard_normal(n)
    mix = np.sqrt(1 - p["noise"]) * pulse / (pulse.std() + 1e-9) + np.sqrt(p["noise"]) * noise
    for freq, bw in _FORMANTS:
        mix = lfilter(*_resonator(freq * p["formant"], bw), mix)
    a_hp = np.exp(-2 * np.pi * _HIGHPASS / sr)
    mix = lfilter([1, -1], [1, -a_hp], mix)
    # Spectral tilt: one-pole low-pass with cutoff 2 kHz * 2**tilt.
    cutoff = float(np.clip(2000.0 * 2.0 ** p["tilt"], 300.0, 7000.0))
    a = np.exp(-2 * np.pi * cutoff / sr)
    mix = lfilter([1 - a], [1, -a], mix)
    # Envelope: smooth onset/offset, then laugh/pant-like pulses.
    attack, release = min(0.04, p["dur"] / 4), min(0.12, p["dur"] / 3)
    env = np.minimum(1.0, np.minimum(t / attack, (p["dur"] - t) / release)).clip(0.0, 1.0)
    env = 0.5 - 0.5 * np.cos(np.pi * env)
    pulses = (0.5 - 0.5 * np.cos(2 * np.pi * p["rate"] * t)) ** 2
    env = env * ((1 - p["depth"]) + p["depth"] * pulses)
    x = mix * env
    rms = np.sqrt(np.mean(x**2)) + 1e-12
    x = x * (10.0 ** (p["loud"] / 20.0) / rms)
    x = x + 1e-4 * rng.standard_normal(n)  # recording noise floor
    return np.clip(x, -0.99, 0.99).astype(np.float32)


def _write_wav(path: Path, audio: np.ndarray) -> None:
    """16-bit PCM mono wav via the standard library (no per-file fsync, byte-for-byte stable)."""
    pcm = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(SAMPLE_RATE)
        fh.writeframes(pcm.tobytes())


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _fmt(value: float) -> str:
    return f"{value:.4f}"


DEMO_MARKER = "SYNTHETIC_DEMO.json"
"""Written at the root of a generated corpus: what made it. Reports read it
(:func:`synthetic_info`) so that its numbers are never taken for results on real data."""


def synthetic_info(root: str | os.PathLike) -> dict | None:
    """The :data:`DEMO_MARKER` record of a corpus root, or ``None`` for a real corpus."""
    path = Path(root) / DEMO_MARKER
    try:
        info = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return {"generator": "data.demo", "note": f"{path} is unreadable"}
    return info if isinstance(info, dict) else None


def make_demo_corpus(
    out_dir: str | os.PathLike, *, n_clips: int = 320, seed: int = 0, overwrite: bool = False
) -> Path:
    """Write a synthetic corpus in the A-VB 2022 layout.

    Writes ``audio/wav/<id>.wav`` (16 kHz mono 16-bit, 0.5 to 3 s), the five label files
    ``labels/{data,high,two,culture,type}_info.csv`` with bracketed ``File_ID`` s
    (``data_info.csv`` also has ``Subject_ID`` and ``Age``) and :data:`DEMO_MARKER`. Same ``seed`` and ``n_clips`` give the
    same bytes.

    Args:
        out_dir: the corpus folder to create.
        n_clips: number of clips (at least 8).
        seed: seed of all randomness.
        overwrite: replace a demo corpus already in ``out_dir``.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ValueError: ``n_clips`` is below 8.
        FileExistsError: ``out_dir`` already holds audio and ``overwrite`` is False.
    """
    if n_clips < MIN_CLIPS:
        raise ValueError(f"n_clips must be at least {MIN_CLIPS} (one clip per type), got {n_clips}")
    root = Path(out_dir)
    wav_dir, label_dir = root / "audio" / "wav", root / "labels"
    if wav_dir.is_dir() and any(wav_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{wav_dir} already holds files; choose an empty folder or pass overwrite=True")
        shutil.rmtree(wav_dir)
        shutil.rmtree(label_dir, ignore_errors=True)
    wav_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    n_subjects = max(4, n_clips // 8)
    subj_country = [COUNTRIES[i] for i in rng.permutation(np.arange(n_subjects) % len(COUNTRIES))]
    subj_age = rng.integers(20, 40, size=n_subjects)
    subj_st = rng.normal(0.0, 1.0, size=n_subjects)
    # Split by subject, about 50/25/25, spreading each country over the splits: walk the
    # subjects country by country and deal them out Train, Val, Train, Test, Train, ...
    order = sorted(rng.permutation(n_subjects), key=lambda i: COUNTRIES.index(subj_country[i]))
    deal = ("Train", "Val", "Train", "Test")
    subj_split = np.empty(n_subjects, dtype=object)
    for pos, subject in enumerate(order):
        subj_split[subject] = deal[pos % len(deal)]
    clip_subject = rng.permutation(np.arange(n_clips) % n_subjects)
    clip_type = [VOC_TYPES[i] for i in rng.permutation(np.arange(n_clips) % len(VOC_TYPES))]

    weights = np.array([_EMOTION_WEIGHTS[e] for e in EMOTIONS])  # (10, P)
    two_weights = np.array([_TWO_WEIGHTS[c] for c in TWO_COLUMNS])  # (2, P)
    rows: dict[str, list[list[str]]] = {k: [] for k in ("data", "high", "two", "culture", "type")}
    for i in range(n_clips):
        s = int(clip_subject[i])
        country, age, split = subj_country[s], float(subj_age[s]), subj_split[s]
        params = _draw_params(rng, clip_type[i], country, age, subj_st[s])
        z = _standardised(params)
        emotions = np.clip(_sigmoid(_EMOTION_BIAS + _GAIN * weights @ z) + _LABEL_NOISE * rng.standard_normal(10), 0, 1)
        two = np.clip(_sigmoid(_GAIN * two_weights @ z) + _LABEL_NOISE * rng.standard_normal(2), 0, 1)
        culture = np.concatenate(
            [
                np.clip(sc * emotions + sh + 0.03 * rng.standard_normal(10), 0, 1)
                for sc, sh in (_COUNTRY_RATING[c] for c in COUNTRIES)
            ]
        )
        audio = _synthesise(rng, params)
        clip_id = str(_FIRST_ID + i)
        _write_wav(wav_dir / f"{clip_id}.wav", audio)

        test = split == "Test"
        key = [f"[{clip_id}]", split]
        blank = lambda k: [""] * k  # noqa: E731
        rows["data"].append(key + [f"S{s:04d}", "" if test else str(int(age)), "" if test else country])
        rows["high"].append(key + (blank(10) if test else [_fmt(v) for v in emotions]))
        rows["two"].append(key + (blank(2) if test else [_fmt(v) for v in two]))
        rows["culture"].append(key + (blank(40) if test else [_fmt(v) for v in culture]))
        rows["type"].append(key + ([""] if test else [clip_type[i]]))

    key_cols = ["File_ID", "Split"]
    _write_csv(label_dir / "data_info.csv", key_cols + ["Subject_ID", "Age", "Country"], rows["data"])
    _write_csv(label_dir / "high_info.csv", key_cols + list(EMOTIONS), rows["high"])
    _write_csv(label_dir / "two_info.csv", key_cols + list(TWO_COLUMNS), rows["two"])
    _write_csv(label_dir / "culture_info.csv", key_cols + list(CULTURE_COLUMNS), rows["culture"])
    _write_csv(label_dir / "type_info.csv", key_cols + ["Voc_Type"], rows["type"])
    (root / DEMO_MARKER).write_text(json.dumps({
        "generator": "data.demo.make_demo_corpus", "n_clips": n_clips, "seed": seed,
        "what": "synthetic vocal bursts whose labels are known functions of the sound, in the "
                "A-VB 2022 layout; not recordings of people"}, indent=2))
    logger.info("demo corpus: %d clips, %d subjects, seed %d -> %s", n_clips, n_subjects, seed, root)
    return root
