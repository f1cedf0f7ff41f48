"""How the extractor computes a model: the self-check at load time and the batching choice.

At load a self-check compares the split path (front end, then the layers under a mask) with
the model's own ``output_hidden_states=True`` forward on two probe clips, and the batched front
end with the per-clip one on a mixed-length batch. A checkpoint whose batched front end differs
keeps the front end clip by clip (:data:`STRATEGY_SPLIT`), as the CPU does by default (there the
batch saves no kernel launches and its large padded conv outputs run slower; set
``frontend_batching = "on"`` to batch anyway); one that fails the first check falls back to
running the model on each clip alone (:data:`STRATEGY_FORWARD`, equal lengths batched). Both say
so in the log. The strategies agree to float rounding (about 3e-6 in float32), so the strategy
is provenance, not identity.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch
from torch import nn

from extract.ssl.config import (
    STRATEGY_BATCHED,
    STRATEGY_FORWARD,
    STRATEGY_SPLIT,
    check_frontend_batching,
)
from extract.ssl.encoder import Encoder

logger = logging.getLogger(__name__)

PROBE_LENGTHS = (8_800, 20_800)
"""Samples of the two probe clips compared with the model's own forward."""
EXTRA_LENGTHS = (400, 3_000)
"""... and of the two more clips mixed in for the batched front end's check."""


def frame_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of matching rows of two ``(frames, dim)`` tensors, in float64."""
    return nn.functional.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12)


def threshold_for(device_type: str) -> float:
    """Minimum frame cosine the split path must reach: float32 on CPU, bfloat16 on CUDA."""
    return 0.999 if device_type == "cpu" else 0.99


def wants_batched_frontend(setting: str, device_type: str) -> bool:
    """Whether to try the batched front end: ``frontend_batching`` on, off or auto (CUDA).

    On CUDA the per-clip front end is bound by kernel launches (some 30 per clip). On the
    CPU there is nothing to save there, and the padded batch's large conv outputs run
    slower than a clip's (allocation and cache): a base-size model's front end measured
    4.5 audio s/s per clip and 3.2 batched on a 2-core box.

    Raises:
        ValueError: ``setting`` is not auto, on or off.
    """
    check_frontend_batching(setting)
    if setting == "auto":
        return device_type == "cuda"
    return setting == "on"


def self_check(
    encoder: Encoder,
    prepare: Callable[[np.ndarray], torch.Tensor],
    *,
    device_type: str,
    try_batched: bool,
    label: str,
) -> str:
    """Compare the split path with the model's own forward; fall back when they differ.

    Runs under the caller's ``inference_mode`` and autocast. May set
    ``encoder.chunkable = False`` when the chunked conv encoder differs.

    Args:
        encoder: the loaded model's encoder.
        prepare: a clip -> its prepared input on the device.
        device_type: ``cpu`` or ``cuda`` (sets the threshold).
        try_batched: also check the batched front end.
        label: names the model in log messages.

    Returns:
        One of :data:`STRATEGY_BATCHED`, :data:`STRATEGY_SPLIT`, :data:`STRATEGY_FORWARD`.
    """
    threshold = threshold_for(device_type)
    if encoder.exact_forward is not None:
        check_forward_batch(encoder, prepare, threshold, label=label)
        logger.info("ssl %s (%s): %s; strategy %s", label, encoder.family, encoder.exact_forward,
                    STRATEGY_FORWARD)
        return STRATEGY_FORWARD
    rng = np.random.default_rng(0)
    probes = [prepare(0.1 * rng.standard_normal(n).astype(np.float32)) for n in PROBE_LENGTHS]
    try:
        worst = 1.0
        ours = encoder.hidden_states(probes, batched=False)
        for wave, states in zip(probes, ours):
            ref = encoder.reference_hidden_states(wave[None])
            if len(ref) != len(states):
                raise RuntimeError(f"model reports {len(ref)} hidden states, expected {len(states)}")
            for a, r in zip(states, ref):
                if a.shape != r[0].shape:
                    raise RuntimeError(f"shape {tuple(a.shape)} != model's {tuple(r[0].shape)}")
                worst = min(worst, float(frame_cosines(a, r[0]).min()))
        if worst < threshold:
            raise RuntimeError(f"min frame cosine {worst:.6f} < {threshold}")
        if encoder.chunkable:
            full = encoder.model.feature_extractor(probes[1][None]).transpose(1, 2)[0]
            chunked = encoder.conv_features(probes[1], chunk_frames=7)[0]
            if chunked.shape != full.shape or float(frame_cosines(chunked, full).min()) < threshold:
                logger.warning("ssl %s: chunked conv encoder differs; long clips run unchunked", label)
                encoder.chunkable = False
        batched = try_batched and check_batched_frontend(encoder, probes, prepare, threshold, label=label)
    except Exception as exc:  # noqa: BLE001 - any failure means: do not trust the split path
        logger.warning(
            "ssl %s (%s): the batched path does not reproduce the model's own forward (%s); "
            "falling back to one clip at a time (equal lengths batched)",
            label, encoder.model.config.model_type, exc,
        )
        return STRATEGY_FORWARD
    logger.debug("ssl self-check: min frame cosine %.6f", worst)
    return STRATEGY_BATCHED if batched else STRATEGY_SPLIT


def check_batched_frontend(
    encoder: Encoder,
    probes: list[torch.Tensor],
    prepare: Callable[[np.ndarray], torch.Tensor],
    threshold: float,
    *,
    label: str,
) -> bool:
    """Does the batched front end give each clip's own front end on its true frames?"""
    rng = np.random.default_rng(1)
    extra = [prepare(0.3 * rng.standard_normal(n).astype(np.float32)) for n in EXTRA_LENGTHS]
    waves = [probes[0], extra[0], probes[1], extra[1]]  # mixed lengths, longest inside
    try:
        together = encoder.frontend_batch(waves)
        worst = 1.0
        for wave, front in zip(waves, together):
            alone = encoder.frontend(wave)
            if front.shape != alone.shape:
                raise RuntimeError(f"shape {tuple(front.shape)} != {tuple(alone.shape)}")
            worst = min(worst, float(frame_cosines(front, alone).min()))
        if worst < threshold:
            raise RuntimeError(f"min frame cosine {worst:.6f} < {threshold}")
    except Exception as exc:  # noqa: BLE001 - the per-clip front end stays exact
        logger.warning(
            "ssl %s (%s): the batched front end is not exact here (%s); the front end runs "
            "clip by clip", label, encoder.model.config.model_type, exc,
        )
        return False
    logger.debug("ssl self-check: batched front end, min frame cosine %.6f", worst)
    return True


def check_forward_batch(
    encoder: Encoder, prepare: Callable[[np.ndarray], torch.Tensor], threshold: float, *, label: str
) -> None:
    """Check a family's :meth:`~Encoder.forward_batch` against its reference on each clip alone.

    Mixed-length probes go through the family's groups; each clip's true frames must match the
    model's own forward of the clip alone (its reference preprocessing included).

    Raises:
        RuntimeError: a shape or a frame differs (the family's batched path is not exact).
    """
    rng = np.random.default_rng(0)
    probes = [prepare(0.1 * rng.standard_normal(n).astype(np.float32)) for n in PROBE_LENGTHS + EXTRA_LENGTHS]
    worst = 1.0
    for group in encoder.forward_groups({i: p.shape[0] for i, p in enumerate(probes)}):
        states, lengths = encoder.forward_batch([probes[i] for i in group])
        for b, i in enumerate(group):
            ref = encoder.reference_hidden_states(probes[i][None])
            if len(ref) != len(states):
                raise RuntimeError(f"ssl {label}: {len(states)} hidden states, the model reports {len(ref)}")
            for h, r in zip(states, ref):
                a = h[b, :lengths[b]]
                if a.shape != r[0].shape:
                    raise RuntimeError(f"ssl {label}: shape {tuple(a.shape)} != model's {tuple(r[0].shape)}")
                worst = min(worst, float(frame_cosines(a, r[0]).min()))
    if worst < threshold:
        raise RuntimeError(f"ssl {label}: batched forward differs from the model's own (min frame "
                           f"cosine {worst:.6f} < {threshold})")
    logger.debug("ssl self-check (forward batches): min frame cosine %.6f", worst)
