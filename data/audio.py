"""Audio loading: any file libsndfile reads -> 16 kHz mono float32.

Every extractor sees the same signal: :func:`load_audio` decodes with soundfile (wav, flac,
ogg, mp3, any PCM/float subtype), averages the channels and resamples with soxr. Broken files
raise :class:`AudioError`, which names the file and says how to fix it; silent or very short
clips are returned as they are (the extractors decide what to do with them).

A clip may be a segment of a file: ``load_audio(path, start=12.5, end=14.5)`` seeks to the
segment and reads only its frames (never the whole file), then averages and resamples exactly as
for a whole file, so a segment gives the same samples as the same span cut out and saved as its
own file. Segment boundaries are taken to the nearest frame of the file's own rate.

Segment identity (the rule clip ids and content hashes follow, see :func:`segment_hash`): times
are counted in integer nanoseconds (``round(seconds * 1e9)``), which is exact for every time
written with up to nine decimals and for ``pandas.Timedelta``; a segment starting at 0 with no
end is the whole file.

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
_NS = 1_000_000_000

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



def to_nanoseconds(seconds: float | None) -> int | None:
    """A time in seconds as integer nanoseconds (None stays None); the unit of segment identity.

    Example:
        >>> to_nanoseconds(12.5), to_nanoseconds(0.1), to_nanoseconds(None)
        (12500000000, 100000000, None)
    """
    if seconds is None or (isinstance(seconds, float) and np.isnan(seconds)):
        return None
    return int(round(float(seconds) * _NS))


def format_seconds(seconds: float) -> str:
    """Shortest exact text of a time at nanosecond resolution (no trailing zeros).

    Example:
        >>> format_seconds(12.5), format_seconds(3.0), format_seconds(0.000000001), format_seconds(-1.25)
        ('12.5', '3', '0.000000001', '-1.25')
    """
    ns = to_nanoseconds(seconds)
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    whole, frac = divmod(ns, _NS)
    text = f"{whole}.{frac:09d}".rstrip("0").rstrip(".")
    return sign + text


def describe_segment(start: float | None, end: float | None) -> str:
    """A segment for messages.

    Example:
        >>> describe_segment(1.5, 3.0), describe_segment(-0.5, 1), describe_segment(38, None)
        ('segment 1.5 s to 3 s', 'segment -0.5 s to 1 s', 'segment 38 s to the end')
    """
    tail = "the end" if end is None else f"{format_seconds(end)} s"
    return f"segment {format_seconds(start or 0.0)} s to {tail}"


def is_whole_file(start: float | None, end: float | None) -> bool:
    """True when ``(start, end)`` means the whole file: no end and a start of 0 or none."""
    return to_nanoseconds(end) is None and not to_nanoseconds(start)


def segment_hash(file_digest: str, start: float | None, end: float | None) -> str:
    """Content hash of a clip: the file's hash for a whole file, else a hash of file and span.

    The rule (stable; stores depend on it): a whole file (see :func:`is_whole_file`) keeps
    :func:`file_hash` of its bytes unchanged; a segment hashes the text
    ``"<file hash>@<start ns>-<end ns or 'end'>"`` with blake2b (16-byte digest).

    Example:
        >>> segment_hash("ab" * 16, 0.0, None) == "ab" * 16
        True
        >>> segment_hash("ab" * 16, 1.5, 3.0) == segment_hash("ab" * 16, 1.5000000001, 3.0)
        True
    """
    if is_whole_file(start, end):
        return file_digest
    s, e = to_nanoseconds(start) or 0, to_nanoseconds(end)
    text = f"{file_digest}@{s}-{'end' if e is None else e}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def span_frames(path: PathLike, start: float | None, end: float | None, *, rate: int,
                frames: int) -> tuple[int, int]:
    """Frame range ``[first, stop)`` of a segment in a file of ``frames`` frames at ``rate``.

    Boundaries go to the nearest frame (halves up). ``end=None`` means the end of the file.

    Raises:
        AudioError: the start is negative, the start is not before the end, the segment ends
            past the end of the file, or it holds no frame at the file's rate.
    """
    s_ns, e_ns = to_nanoseconds(start) or 0, to_nanoseconds(end)
    shown = describe_segment(s_ns / _NS, None if e_ns is None else e_ns / _NS)
    if s_ns < 0:
        raise AudioError(path, f"{shown}: the start is negative; segment times count from 0 s "
                               "at the start of the file")
    if e_ns is not None and e_ns <= s_ns:
        raise AudioError(path, f"{shown}: the start is not before the end; swap or fix the times")
    first = (2 * s_ns * rate + _NS) // (2 * _NS)
    stop = frames if e_ns is None else (2 * e_ns * rate + _NS) // (2 * _NS)
    if stop > frames or first >= frames:
        raise AudioError(path, f"{shown} ends past the end of the file ({format_seconds(frames / rate)} "
                               "s long); fix the segment's times or drop the row")
    if stop <= first:
        raise AudioError(path, f"{shown} holds no sample at {rate} Hz; make it longer or drop it")
    return int(first), int(stop)


def clip_seconds(path: PathLike, start: float | None = None, end: float | None = None) -> float:
    """Duration in seconds of a file or of a segment of it, from the file's header.

    Raises:
        AudioError: the header cannot be read, or the segment is out of range.
    """
    frames, rate, _ = audio_info(path)
    if rate <= 0:
        return 0.0
    if is_whole_file(start, end):
        return frames / rate
    first, stop = span_frames(path, start, end, rate=rate, frames=frames)
    return (stop - first) / rate


def load_audio(path: PathLike, *, sample_rate: int = SAMPLE_RATE, start: float | None = None,
               end: float | None = None) -> np.ndarray:
    """Decode an audio file into mono float32 samples at ``sample_rate``.

    Channels are averaged; other rates are resampled with soxr (``quality="HQ"``). Integer
    subtypes are scaled to [-1, 1) by soundfile. With ``start``/``end`` only that segment is
    read (seek, then its frames), and resampled on its own: the result equals loading the same
    span cut out and saved as its own file.

    Args:
        path: audio file in any format libsndfile reads (wav, flac, ogg, mp3, ...).
        sample_rate: output rate in Hz.
        start: segment start in seconds (None or 0: the beginning).
        end: segment end in seconds (None: the end of the file).

    Returns:
        1-D float32 array of shape ``(num_samples,)``.

    Raises:
        AudioError: the file is missing, empty, unreadable or truncated, holds no samples, or
            holds NaN/Inf samples; the segment is out of range (see :func:`span_frames`).
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
        if is_whole_file(start, end):
            data, rate = sf.read(str(p), dtype="float32", always_2d=True)
        else:
            data, rate = _read_span(p, start, end)
    except AudioError:
        raise
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


def _read_span(p: Path, start: float | None, end: float | None) -> tuple[np.ndarray, int]:
    """Seek to a segment and read only its frames: ``((frames, channels) float32, rate)``."""
    with sf.SoundFile(str(p)) as fh:
        rate = int(fh.samplerate)
        first, stop = span_frames(p, start, end, rate=rate, frames=int(fh.frames))
        if first:
            fh.seek(first)
        data = fh.read(stop - first, dtype="float32", always_2d=True)
    if data.shape[0] < stop - first:
        raise AudioError(p, f"holds {data.shape[0]} of the {stop - first} frames the segment needs "
                            "(the file is shorter than its header says); re-copy or re-export it")
    return data, rate


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
