"""w2v-BERT 2.0 (``Wav2Vec2BertModel``): 80-bin Kaldi fbank stacked in pairs (160 values per
20 ms frame), a feature projection and conformer layers with relative attention.

The model's own reference is ``SeamlessM4TFeatureExtractor`` on the clip (per-utterance
normalised fbank, padded to an even frame count, pairs stacked, an attention mask) and the
model's forward with that mask; a clip's true frames are the mask's (``fbank_frames // 2``,
fbank frames being ``1 + (n - 400) // 160``). Batching clips of different lengths changes the
padded frames the conformer's depthwise convolutions and the mask see, so each clip runs with
its own features alone (clips of equal length batched): the exact path, named in the
provenance. Clips shorter than one stacked frame (560 samples, 35 ms) are zero-padded to it.

Hidden states are what the model reports: index 0 is the projected features (the input of the
first conformer layer), index ``i`` the output of layer ``i``.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from extract.base import SAMPLE_RATE
from extract.ssl.encoder import Encoder, check_clip
from extract.ssl.whisper import load_feature_extractor

FBANK_WINDOW = 400
"""Samples of one 25 ms fbank frame."""
FBANK_HOP = 160
"""Samples between fbank frames (10 ms)."""


class W2VBertEncoder(Encoder):
    """w2v-BERT 2.0 as the extractor runs it (see the module docstring).

    Args:
        model: a ``Wav2Vec2BertModel`` in eval mode.
        chunk_frames: unused.
    """

    family: ClassVar[str] = "w2v-bert-fbank"
    exact_forward: ClassVar[str | None] = (
        "w2v-BERT's conformer convolutions and masked attention see a padded batch's padding: "
        "each clip runs with SeamlessM4TFeatureExtractor's features alone (equal lengths batched)"
    )
    normalizes_waveform: ClassVar[bool] = False

    def __init__(self, model: nn.Module, chunk_frames: int) -> None:  # noqa: D107 - no ConvFrontEnd
        self.model = model
        self.chunk_frames = chunk_frames
        self.chunkable = False
        self.fe = load_feature_extractor(model, "SeamlessM4TFeatureExtractor")
        if self.fe.sampling_rate != SAMPLE_RATE:
            raise ValueError(f"the w2v-BERT feature extractor expects {self.fe.sampling_rate} Hz; "
                             f"this pipeline feeds {SAMPLE_RATE} Hz")
        self.stride = int(self.fe.stride)

    @classmethod
    def accepts(cls, config: Any) -> bool:
        """w2v-BERT configs (``model_type`` wav2vec2-bert)."""
        return getattr(config, "model_type", None) == "wav2vec2-bert"

    @staticmethod
    def frame_timing(config: Any) -> tuple[int, float]:
        """Frame ``t`` stacks fbank frames ``2 t`` and ``2 t + 1`` (25 ms windows, 10 ms apart):
        hop 320, centre midway between their centres (200 and 360 samples), 280."""
        first, second = FBANK_WINDOW / 2.0, FBANK_HOP + FBANK_WINDOW / 2.0
        return 2 * FBANK_HOP, (first + second) / 2.0

    @staticmethod
    def min_samples(config: Any) -> int:
        """Two fbank frames: one stacked 20 ms frame (560 samples)."""
        return FBANK_WINDOW + FBANK_HOP

    @classmethod
    def input_identity(cls, config: Any, options: Any) -> dict[str, Any]:
        """The input representation: SeamlessM4TFeatureExtractor's stacked fbank."""
        return {"features": "seamless-m4t-fbank", "per_clip": True}

    @staticmethod
    def prepare(signal: np.ndarray, *, do_normalize: bool, min_samples: int) -> np.ndarray:
        """The checked clip as float32, zero-padded to ``min_samples``."""
        x = check_clip(signal).astype(np.float32)
        return np.pad(x, (0, min_samples - x.size)) if x.size < min_samples else x

    def enable_pos_conv_gemm(self) -> bool:
        """w2v-BERT has no positional conv."""
        return False

    def num_frames(self, num_samples: int) -> int:
        """True frames of a clip: ``(1 + (n - 400) // 160) // 2`` (at least one)."""
        n = max(int(num_samples), FBANK_WINDOW + FBANK_HOP)
        return (1 + (n - FBANK_WINDOW) // FBANK_HOP) // self.stride

    def frame_counts(self, num_samples: Sequence[int]) -> list[int]:
        """:meth:`num_frames` of many clips."""
        return [self.num_frames(int(n)) for n in num_samples]

    def reference_hidden_states(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``SeamlessM4TFeatureExtractor`` on each row (equal lengths), the model's own forward
        with its attention mask, the true frames."""
        host = list(inputs.detach().float().cpu().numpy())
        feats = self.fe(host, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
        mask = feats.attention_mask
        n = int(mask[0].sum())
        states = self.model(feats.input_features.to(inputs.device), attention_mask=mask.to(inputs.device),
                            output_hidden_states=True).hidden_states
        return tuple(h[:, :n] for h in states)

    def hidden_states(self, waves: list[torch.Tensor], *, batched: bool) -> list[list[torch.Tensor]]:
        """Every hidden state ``(frames, hidden)`` of each clip alone."""
        return [[h[0] for h in self.reference_hidden_states(w[None])] for w in waves]
