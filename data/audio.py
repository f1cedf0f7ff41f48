"""Audio loading: any file libsndfile reads -> 16 kHz mono float32.

Every extractor sees the same signal: :func:`load_audio` decodes with soundfile (wav, flac,
ogg, mp3, any PCM/float subtype), averages the channels and resamples with soxr. Broken files
raise :class:`AudioError`, which names the file and says how to fix it; silent or very short
clips are returned as they are (the extractors decide what to do with them).

Example:
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> sf.write(path, np.zeros((8000, 2)), 8000, subtype="PCM_16")
    >>> load_audio(path).shape
    (16000,)
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
"""The rate every clip is resampled to."""

_HASH_BLOCK = 1 << 20  # 1 MiB

PathLike = str | os.PathLike


class AudioError(ValueError):
    """A clip cannot be decoded into usable samples.

    Attributes:
        path: the file that failed.
        reason: what is wrong and what to do about it.
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep picklable across worker processes
        return (type(self), (self.path, self.reason))


def _check_file(path: Path) -> None:
    """Raise AudioError for a missing, non-regular or empty file."""
    if not path.exists():
        raise AudioError(path, "file not found; check the path and the corpus root")
    if not path.is_file():
        raise AudioError(path, "not a regular file; point to an audio file, not a folder")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes); re-copy or re-export the clip")


def _wav_shortfall(path: Path) -> tuple[int, int] | None:
    """For a RIFF/WAVE file, compare the declared data chunk size with the bytes present.

    libsndfile silently decodes a truncated wav up to where the bytes end; a clip cut short
    by an interrupted copy should be reported instead.

    Returns:
        ``(declared, present)`` byte counts when the data chunk is cut short, else None.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            declared = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                present = size - pos - 8
                # 0 and 0xFFFFFFFF mark streamed files whose size was never filled in.
                if declared in (0, 0xFFFFFFFF) or declared <= present:
                    return None
                return declared, present
            pos += 8 + declared + (declared & 1)
    return None


def audio_info(path: PathLike) -> tuple[int, int, int]:
    """Read the header of an audio file without decoding it.

    Args:
        path: audio file in any format libsndfile reads.

    Returns:
        ``(num_frames, sample_rate, channels)`` as stored in the file.

    Raises:
        AudioError: the file is missing, empty or not a readable audio file.
    """
    p = Path(path)
    _check_file(p)
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(
            p, f"cannot read the audio header ({exc}); re-export as 16-bit wav or flac"
        ) from exc
    return int(info.frames), int(info.samplerate), int(info.channels)


def duration_seconds(path: PathLike) -> float:
    """Duration of an audio file in seconds, from its header.

    Args:
        path: audio file in any format libsndfile reads.

    Returns:
        Number of frames divided by the sample rate.

    Raises:
        AudioError: the header cannot be read.
    """
    frames, rate, _ = audio_info(path)
    return frames / rate if rate > 0 else 0.0


def load_audio(path: PathLike, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file into mono float32 samples at ``sample_rate``.

    Channels are averaged; other rates are resampled with soxr (``quality="HQ"``). Integer
    subtypes are scaled to [-1, 1) by soundfile.

    Args:
        path: audio file in any format libsndfile reads (wav, flac, ogg, mp3, ...).
        sample_rate: output rate in Hz.

    Returns:
        1-D float32 array of shape ``(num_samples,)``.

    Raises:
        AudioError: the file is missing, empty, unreadable or truncated, holds no samples, or
            holds NaN/Inf samples.
        ValueError: ``sample_rate`` is not a positive integer.

    Example:
        >>> import numpy as np, soundfile as sf, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "a.flac")
        >>> sf.write(p, np.zeros(44100), 44100)
        >>> load_audio(p).shape
        (16000,)
    """
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
    p = Path(path)
    _check_file(p)
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(
            p,
            f"cannot decode audio ({exc}); the file may be truncated or not audio: "
            "re-export it as 16-bit wav",
        ) from exc
    shortfall = _wav_shortfall(p)
    if shortfall is not None:
        raise AudioError(
            p,
            f"truncated: the header declares {shortfall[0]} bytes of audio but the file holds "
            f"{shortfall[1]}; re-copy the file or re-export it as 16-bit wav",
        )
    if data.shape[0] == 0:
        raise AudioError(p, "file holds 0 samples; re-export the clip or drop it from the corpus")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise AudioError(
            p,
            f"{bad} of {data.size} samples are NaN or Inf; fix the file (e.g. re-export it "
            "as 16-bit wav) or drop it from the corpus",
        )
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def file_hash(path: PathLike) -> str:
    """Content hash of a file's bytes (blake2b, 16-byte digest), read in 1 MiB blocks.

    Args:
        path: any file.

    Returns:
        32-character lowercase hex digest.

    Raises:
        AudioError: the file is missing or cannot be read.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.bin")
        >>> _ = open(p, "wb").write(b"abc")
        >>> len(file_hash(p))
        32
    """
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                h.update(block)
    except FileNotFoundError as exc:
        raise AudioError(path, "file not found; check the path and the corpus root") from exc
    except OSError as exc:
        raise AudioError(path, f"cannot read the file ({exc}); check its permissions") from exc
    return h.hexdigest()
