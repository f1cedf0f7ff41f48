"""Acoustic descriptor groups of openSMILE functionals, for "which descriptors does a layer
explain best".

The groups follow the parameter families of the eGeMAPS definition (Eyben et al., "The Geneva
Minimalistic Acoustic Parameter Set (GeMAPS) for Voice Research and Affective Computing", IEEE
Transactions on Affective Computing, 2016): frequency-related (pitch, jitter, formants),
energy/amplitude-related (shimmer, loudness, harmonics-to-noise ratio), spectral balance,
cepstral and temporal parameters. We split the families finer (pitch apart from jitter, formant
frequencies apart from bandwidths and amplitudes) so a layer's profile is readable; the grouping
is by the low-level descriptor named at the start of each functional's column name.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

# group -> regular expression on the column name (first match wins, in this order)
EGEMAPS_GROUPS: dict[str, str] = {
    "pitch": r"^F0semitone",
    "jitter": r"^jitter",
    "shimmer": r"^shimmer",
    "loudness": r"^(loudness_|equivalentSoundLevel)",
    "harmonicity": r"^(HNR|logRelF0-H1-H2|logRelF0-H1-A3)",
    "formant frequency": r"^F[123]frequency",
    "formant bandwidth": r"^F[123]bandwidth",
    "formant amplitude": r"^F[123]amplitudeLogRelF0",
    "spectral balance": r"^(alphaRatio|hammarbergIndex|slope)",
    "spectral flux": r"^spectralFlux",
    "mfcc": r"^mfcc",
    "temporal": r"(PerSec|SegmentLength)",
}
"""eGeMAPSv02's 88 functionals in 12 descriptor groups; every column falls in exactly one."""


def descriptor_groups(columns: Sequence[str]) -> dict[str, list[int]]:
    """Column indices of each descriptor group present in ``columns`` (empty groups left out).

    Columns that match no group are not returned; for eGeMAPSv02 every column matches.

    Example:
        >>> descriptor_groups(["F0semitoneFrom27.5Hz_sma3nz_amean", "jitterLocal_sma3nz_amean"])
        {'pitch': [0], 'jitter': [1]}
    """
    out: dict[str, list[int]] = {}
    patterns = [(g, re.compile(p)) for g, p in EGEMAPS_GROUPS.items()]
    for i, col in enumerate(columns):
        for group, pattern in patterns:
            if pattern.search(col):
                out.setdefault(group, []).append(i)
                break
    return {g: out[g] for g in EGEMAPS_GROUPS if g in out}
