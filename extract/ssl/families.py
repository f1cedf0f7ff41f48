"""The encoder families, in the order they are tried on a checkpoint's config.

A new family (a log-mel model such as Whisper's encoder, w2v-BERT 2.0's conformer) is one
:class:`~extract.ssl.encoder.Encoder` subclass in its own module of this package, overriding
what differs (``accepts``, ``num_states``, ``hidden_size``, ``min_samples``, ``prepare`` /
``prepare_padded``, ``frame_counts`` / ``num_frames``, ``frontend`` / ``frontend_padded``,
``run_layers``, ``reference_hidden_states``), added to :data:`ENCODER_FAMILIES` before the
classes whose ``accepts`` would also take its configs.
"""
from __future__ import annotations

from typing import Any

from extract.ssl.encoder import Encoder
from extract.ssl.w2vbert import W2VBertEncoder
from extract.ssl.whisper import WhisperEncoder

ENCODER_FAMILIES: tuple[type[Encoder], ...] = (
    WhisperEncoder,  # Whisper's encoder: log-mel, padded 30 s windows
    W2VBertEncoder,  # w2v-BERT 2.0: stacked fbank, conformer
    Encoder,
)
"""Encoder classes in the order :func:`encoder_family` tries them."""


def encoder_family(config: Any) -> type[Encoder] | None:
    """The first class of :data:`ENCODER_FAMILIES` that accepts ``config``, or ``None``."""
    for cls in ENCODER_FAMILIES:
        if cls.accepts(config):
            return cls
    return None
