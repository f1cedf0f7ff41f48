"""Constants and option checks of the SSL extractor: the closed choices and the limits.

Everything here is plain data or a pure check; nothing loads a model.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from extract.devices import DEVICES  # the one tuple of device names, re-exported here

from extract.base import WHISPER_INPUTS  # the one tuple of Whisper inputs, re-exported here
from extract.base import ExtractOptions
from extract.pooling import validate_poolings

MAX_BATCH_CLIPS = 64
"""At most this many clips in one planned batch, whatever their length."""
CONV_CHUNK_FRAMES = 1500
"""Output frames (30 s) per chunk of the conv feature encoder on long clips."""
FRONTEND_BATCH_SECONDS = 64.0
"""At most this much padded audio per batch of the batched front end (bounds its memory)."""
FRONTEND_MAX_STRETCH = 1.5
"""A batch of the front end holds clips up to this many times its shortest (padding <= 1/3)."""
EAGER_MAX_FULL_FRAMES = 3000
"""Eager-attention models (WavLM) see clips up to this many frames (60 s) whole."""
EAGER_WINDOW_FRAMES = 1500
"""Longer clips of eager-attention models: frames kept per window (30 s)."""
EAGER_WINDOW_CONTEXT = 250
"""... and frames of context on each side of a window (5 s)."""
NORM_EPS = 1e-7
"""Epsilon of ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm``."""
HIDDEN_STATES = "input-of-layer-1,raw-layer-outputs"
"""Our hidden-state convention (see the package docstring); part of the identity."""
STORAGE_DTYPES = ("float16", "float32")
FRONTEND_BATCHING = ("auto", "on", "off")
"""``SSLExtractor.frontend_batching``: auto batches the front end on CUDA only."""
STRATEGY_BATCHED = "batched-frontend+masked-encoder"
STRATEGY_SPLIT = "per-clip-frontend+masked-encoder"
STRATEGY_FORWARD = "per-clip-forward"
STRATEGIES = (STRATEGY_BATCHED, STRATEGY_SPLIT, STRATEGY_FORWARD)
FLOAT16_MAX = float(np.finfo(np.float16).max)


def check_options(options: ExtractOptions) -> tuple[str, ...]:
    """Validate the options the SSL extractor reads; return the canonical poolings.

    Raises:
        ValueError: a pooling, dtype, device or batch_seconds value is invalid (the message
            names the option, the valid values and the value received).
    """
    poolings = validate_poolings(options.poolings)
    if options.dtype not in STORAGE_DTYPES:
        raise ValueError(
            f"dtype {options.dtype!r} is not supported for ssl; valid: {', '.join(STORAGE_DTYPES)}"
        )
    if options.device not in DEVICES:
        raise ValueError(f"device {options.device!r} is not valid; valid: {', '.join(DEVICES)}")
    if options.whisper_input not in WHISPER_INPUTS:
        raise ValueError(f"whisper_input {options.whisper_input!r} is not valid; valid: {', '.join(WHISPER_INPUTS)}")
    if not options.batch_seconds > 0:
        raise ValueError(f"batch_seconds must be > 0, got {options.batch_seconds!r}")
    return poolings


def check_layers(
    layers: Sequence[int] | None, n_states: int, option: str, *, empty_ok: bool = False
) -> tuple[int, ...]:
    """Hidden-state indices, negative ones counted from the end, sorted and de-duplicated.

    Args:
        layers: the indices asked for (``None``: all, or none when ``empty_ok``).
        n_states: hidden states of the model (layers + 1).
        option: the option's name, for the error message.
        empty_ok: whether no layer at all is valid (``frames_layers``).

    Raises:
        ValueError: an index is out of range, or the selection is empty where it must not be.

    Example:
        >>> check_layers((-1, 0, 0), 13, "layers")
        (0, 12)
    """
    if layers is None:
        return tuple(range(n_states)) if not empty_ok else ()
    out = set()
    for layer in layers:
        if not isinstance(layer, (int, np.integer)) or not -n_states <= layer < n_states:
            raise ValueError(
                f"{option}: {layer!r} is not a hidden-state index of this model; "
                f"valid: 0..{n_states - 1} "
                f"(0 = input of the first transformer layer, {n_states - 1} = last layer) or "
                f"-{n_states}..-1"
            )
        out.add(int(layer) % n_states)
    if not out and not empty_ok:
        raise ValueError(f"{option} is empty; valid: 0..{n_states - 1}")
    return tuple(sorted(out))


def check_frontend_batching(value: str) -> None:
    """Raise ``ValueError`` naming the valid values when ``value`` is not one of them."""
    if value not in FRONTEND_BATCHING:
        raise ValueError(f"frontend_batching {value!r}; valid: {', '.join(FRONTEND_BATCHING)}")
