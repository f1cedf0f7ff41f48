"""Whisper's encoder (``WhisperModel``, tiny to large-v3, and fine-tuned folders): log-mel in,
two convs (the second of stride 2), sinusoidal positions, pre-norm transformer layers.

Whisper pads every input to 30 s (480,000 samples; 3,000 mel frames at a 10 ms hop; 1,500
encoder frames of 20 ms) and its attention has no mask: a clip's true frames see the padded
rest of the window. The model's own reference is therefore ``WhisperFeatureExtractor`` on the
clip (padded to 30 s) and the encoder's forward on the whole window; only the clip's true
frames are kept and pooled. A clip's true mel frames are those whose centre lies inside it,
``ceil(n / 160)`` (the feature extractor's attention mask), and the encoder's are
``(mel - 1) // 2 + 1`` (the model's own formula).

Clips over 30 s run in non-overlapping 30 s windows, each one padded and run as a clip of its
own, their true frames concatenated (recorded in the identity). Every window is padded to the
same 30 s, so windows of different clips batch exactly; the log-mel is computed on the device
(the feature extractor's steps: periodic Hann STFT, power, its mel filters, log10, the
window's max - 8 floor, (x + 4) / 4). The self-check compares this against the feature
extractor's own (numpy) preprocessing and the encoder's forward on each clip alone.

Hidden states are what the model reports: index 0 is the input of the first layer (convs +
positions), index ``i`` the output of layer ``i``; the last index has the encoder's final
layer norm applied (transformers reports it so for Whisper).
"""
from __future__ import annotations

import logging
import math
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from extract.base import SAMPLE_RATE
from extract.ssl.encoder import Encoder, check_clip

logger = logging.getLogger(__name__)

MAX_WINDOWS_PER_FORWARD = 16
"""At most this many 30 s windows in one encoder forward (bounds the memory of all hidden
states: 16 x 1500 frames per layer)."""


def load_feature_extractor(model: nn.Module, cls_name: str, **defaults: Any) -> Any:
    """The checkpoint folder's own feature extractor, else one with ``defaults`` (logged).

    Args:
        model: the loaded model (its ``name_or_path`` is the folder or hub id).
        cls_name: the transformers class, e.g. ``WhisperFeatureExtractor``.
    """
    import transformers

    cls = getattr(transformers, cls_name)
    where = getattr(model, "name_or_path", "") or ""
    try:
        return cls.from_pretrained(where, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a folder without preprocessor_config.json
        logger.warning("%s: no %s saved with the checkpoint (%s); using its defaults %s",
                       where, cls_name, exc, defaults)
        return cls(**defaults)


class WhisperEncoder(Encoder):
    """Whisper's encoder as the extractor runs it (see the module docstring).

    Args:
        model: a ``WhisperModel`` (only its encoder runs) in eval mode.
        chunk_frames: unused (Whisper has no chunked front end).
    """

    family: ClassVar[str] = "whisper-log-mel"
    exact_forward: ClassVar[str | None] = (
        "Whisper attends over its whole 30 s window without a mask: each clip runs padded to 30 s "
        "windows as WhisperFeatureExtractor pads it (windows of any clips batch exactly), only "
        "its true frames are kept"
    )
    normalizes_waveform: ClassVar[bool] = False

    def __init__(self, model: nn.Module, chunk_frames: int) -> None:  # noqa: D107 - no ConvFrontEnd
        self.model = model
        self.chunk_frames = chunk_frames
        self.chunkable = False
        self.encoder = model.get_encoder() if hasattr(model, "get_encoder") else model.encoder
        config = model.config
        self.fe = load_feature_extractor(model, "WhisperFeatureExtractor", feature_size=config.num_mel_bins)
        if self.fe.sampling_rate != SAMPLE_RATE:
            raise ValueError(f"the Whisper feature extractor expects {self.fe.sampling_rate} Hz; "
                             f"this pipeline feeds {SAMPLE_RATE} Hz")
        self.window = int(self.fe.n_samples)  # 480,000
        self.hop = int(self.fe.hop_length)
        self.n_fft = int(self.fe.n_fft)
        self.mel_frames = int(self.fe.nb_max_frames)  # 3,000
        self._filters: dict[torch.device, torch.Tensor] = {}
        self.trimmed = False

    # -- what the family is ------------------------------------------------------------------
    @classmethod
    def accepts(cls, config: Any) -> bool:
        """Whisper configs (``model_type`` whisper)."""
        return getattr(config, "model_type", None) == "whisper"

    @staticmethod
    def num_states(config: Any) -> int:
        """Encoder layers + 1."""
        return int(config.encoder_layers) + 1

    @staticmethod
    def hidden_size(config: Any) -> int:
        """``d_model``."""
        return int(config.d_model)

    @staticmethod
    def frame_timing(config: Any) -> tuple[int, float]:
        """Encoder frame ``t`` is centred on log-mel frame ``2 t`` (the second conv has stride 2),
        whose centred STFT window sits on sample ``2 t * 160``: hop 320, centre 0."""
        return 2 * 160, 0.0

    @staticmethod
    def min_samples(config: Any) -> int:
        """One sample: any clip is padded to 30 s and has at least one true frame."""
        return 1

    @classmethod
    def check_family_options(cls, options: Any, label: str) -> None:
        """Every ``whisper_input`` applies (checked by :func:`extract.ssl.config.check_options`)."""

    @classmethod
    def long_clip_policy(cls, config: Any, options: Any) -> dict[str, Any]:
        """Non-overlapping 30 s windows, their true frames concatenated."""
        return {"window_seconds": 30, "overlap_seconds": 0, "frames": "concatenated"}

    @classmethod
    def input_identity(cls, config: Any, options: Any) -> dict[str, Any]:
        """The input representation: the padded 30 s window (the model's own) or trimmed."""
        trimmed = options.whisper_input == "trimmed"
        return {"features": "whisper-log-mel", "num_mel_bins": int(config.num_mel_bins),
                "whisper_input": "trimmed-to-clip" if trimmed else "padded-30s"}

    def configure(self, options: Any) -> None:
        """``whisper_input``: ``trimmed`` cuts each window's input to the clip's mel frames."""
        self.trimmed = options.whisper_input == "trimmed"
        if self.trimmed:
            self.exact_forward = (
                "whisper-input trimmed: each window's log-mel is cut to the clip's own frames (not "
                "the model's 30 s input); clips batch under an attention mask, the convs see zeros "
                "past each clip as they do on the clip alone")

    @staticmethod
    def prepare(signal: np.ndarray, *, do_normalize: bool, min_samples: int) -> np.ndarray:
        """The checked clip as float32 (Whisper does not normalise the waveform)."""
        return check_clip(signal).astype(np.float32)

    def enable_pos_conv_gemm(self) -> bool:
        """Whisper has no positional conv."""
        return False

    # -- frames ------------------------------------------------------------------------------
    def window_lengths(self, num_samples: int) -> list[int]:
        """Samples of each 30 s window of a clip (the last one partial)."""
        return [min(self.window, num_samples - s) for s in range(0, max(num_samples, 1), self.window)]

    def window_frames(self, samples: int) -> int:
        """True encoder frames of one window of ``samples`` samples."""
        mel = math.ceil(samples / self.hop)
        return (mel - 1) // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """True encoder frames of a clip (its windows' frames added)."""
        return sum(self.window_frames(n) for n in self.window_lengths(int(num_samples)))

    def frame_counts(self, num_samples: Sequence[int]) -> list[int]:
        """:meth:`num_frames` of many clips."""
        return [self.num_frames(int(n)) for n in num_samples]

    # -- compute -----------------------------------------------------------------------------
    def log_mel(self, windows: torch.Tensor) -> torch.Tensor:
        """``WhisperFeatureExtractor``'s log-mel of ``(W, 480000)`` padded windows: ``(W, mels, 3000)``."""
        device = windows.device
        if device not in self._filters:
            self._filters[device] = torch.from_numpy(np.asarray(self.fe.mel_filters, np.float32)).to(device)
        filters = self._filters[device]  # (freqs, mels)
        with torch.autocast(device.type, enabled=False):
            stft = torch.stft(windows.float(), self.n_fft, self.hop,
                              window=torch.hann_window(self.n_fft, device=device), return_complex=True)
            power = stft[..., :-1].abs().square()  # (W, freqs, 3000)
            mel = torch.clamp(filters.T @ power, min=1e-10).log10()
            floor = mel.amax(dim=(1, 2), keepdim=True) - 8.0
            return (torch.maximum(mel, floor) + 4.0) / 4.0

    def forward_groups(self, lengths: dict[int, int]) -> list[list[int]]:
        """Clips in order, at most :data:`MAX_WINDOWS_PER_FORWARD` windows a group (a longer
        clip is a group of its own)."""
        groups: list[list[int]] = []
        used = 0
        for i in sorted(lengths, key=lambda i: (lengths[i], i)):
            w = len(self.window_lengths(lengths[i]))
            if groups and used + w <= MAX_WINDOWS_PER_FORWARD:
                groups[-1].append(i)
                used += w
            else:
                groups.append([i])
                used = w
        return groups

    def _encode(self, features: torch.Tensor, mel_frames: list[int]) -> tuple[torch.Tensor, ...]:
        """The encoder on ``(W, mels, 3000)`` features, in pieces of
        :data:`MAX_WINDOWS_PER_FORWARD` windows: its own forward, or :meth:`encode_trimmed`."""
        pieces = []
        for s in range(0, features.shape[0], MAX_WINDOWS_PER_FORWARD):
            part = features[s:s + MAX_WINDOWS_PER_FORWARD]
            if self.trimmed:
                pieces.append(self.encode_trimmed(part, mel_frames[s:s + MAX_WINDOWS_PER_FORWARD]))
            else:
                pieces.append(self.encoder(part, output_hidden_states=True).hidden_states)
        width = max(p[0].shape[1] for p in pieces)
        return tuple(torch.cat([nn.functional.pad(h, (0, 0, 0, width - h.shape[1])) for h in layer], dim=0)
                     for layer in zip(*pieces))

    def encode_trimmed(self, features: torch.Tensor, mel_frames: list[int]) -> tuple[torch.Tensor, ...]:
        """The encoder's modules on each window's log-mel cut to its true frames (``trimmed``).

        A window alone is its first ``mel_frames`` columns; in a batch the columns past them
        and the first conv's outputs past them are zero (what the convs' own zero padding
        gives the window alone), positions are the first ones, and the layers run under a
        mask that hides padded keys. The last state gets the encoder's final layer norm, as
        the model reports it. In train mode the encoder's dropout and LayerDrop apply as in its
        own forward.

        Args:
            features: ``(W, mels, frames)`` log-mel, at least ``max(mel_frames)`` frames.
            mel_frames: true mel frames of each window.

        Returns:
            Per hidden state ``(W, max encoder frames, hidden)``; rows past a window's frames
            are padding.
        """
        from transformers.masking_utils import create_bidirectional_mask

        enc = self.encoder
        width = max(mel_frames)
        m = torch.tensor(mel_frames, device=features.device)
        keep = (torch.arange(width, device=features.device)[None, :] < m[:, None])[:, None, :]  # (W, 1, M)
        x = features[:, :, :width].masked_fill(~keep, 0.0)
        h = nn.functional.gelu(enc.conv1(x)).masked_fill(~keep, 0.0)
        h = nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)  # (W, E, d)
        frames = h.shape[1]
        h = h + enc.embed_positions.weight[:frames]
        # train mode (fine-tuning): the encoder's own dropout and LayerDrop; no-ops in eval
        h = nn.functional.dropout(h, p=enc.dropout, training=enc.training)
        e = (m - 1) // 2 + 1
        mask = None
        if min((n - 1) // 2 + 1 for n in mel_frames) < frames:  # host integers: no device sync
            mask2d = torch.arange(frames, device=h.device)[None, :] < e[:, None]
            mask = create_bidirectional_mask(config=self.model.config, inputs_embeds=h, attention_mask=mask2d)
        states = [h]
        for layer in enc.layers:
            if not (enc.training and enc.layerdrop > 0.0 and torch.rand([]) < enc.layerdrop):
                out = layer(h, mask)
                h = out[0] if isinstance(out, tuple) else out
            states.append(h)  # a dropped layer passes its input on
        states[-1] = enc.layer_norm(h)
        return tuple(states)

    def assemble(self, states: tuple[torch.Tensor, ...], windows: list[list[int]]
                  ) -> tuple[tuple[torch.Tensor, ...], list[int]]:
        """Per clip, its windows' true frames concatenated; padded into ``(B, T, H)``."""
        lengths = [sum(self.window_frames(m) for m in clip_windows) for clip_windows in windows]
        out = []
        for h in states:
            per_clip, r = [], 0
            for clip_windows in windows:
                parts = [h[r + j, :self.window_frames(m)] for j, m in enumerate(clip_windows)]
                r += len(clip_windows)
                per_clip.append(torch.cat(parts, dim=0))
            out.append(nn.utils.rnn.pad_sequence(per_clip, batch_first=True))
        return tuple(out), lengths

    def forward_batch(self, waves: list[torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], list[int]]:
        """Every clip's windows padded to 30 s, one log-mel, the encoder's forward, true frames."""
        windows = [self.window_lengths(w.shape[0]) for w in waves]
        x = torch.zeros((sum(len(c) for c in windows), self.window), dtype=torch.float32,
                        device=waves[0].device)
        r = 0
        for wave, clip_windows in zip(waves, windows):
            for j, m in enumerate(clip_windows):
                x[r, :m] = wave[j * self.window:j * self.window + m]
                r += 1
        mel = [math.ceil(m / self.hop) for c in windows for m in c]
        return self.assemble(self._encode(self.log_mel(x), mel), windows)

    def reference_hidden_states(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``WhisperFeatureExtractor`` (numpy) on each 30 s window, the encoder's own forward,
        each clip's true frames (rows of ``inputs`` have equal lengths)."""
        host = inputs.detach().float().cpu().numpy()
        windows = [self.window_lengths(row.shape[0]) for row in host]
        pieces = [row[j * self.window:j * self.window + m] for row, c in zip(host, windows) for j, m in enumerate(c)]
        features = self.fe(pieces, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        mel = [math.ceil(m / self.hop) for c in windows for m in c]
        states, _ = self.assemble(self._encode(features.to(inputs.device), mel), windows)
        return states

    def hidden_states(self, waves: list[torch.Tensor], *, batched: bool) -> list[list[torch.Tensor]]:
        """Every hidden state ``(frames, hidden)`` of each clip (:meth:`forward_batch`)."""
        out = []
        for group in self.forward_groups({i: w.shape[0] for i, w in enumerate(waves)}) if batched else \
                [[i] for i in range(len(waves))]:
            states, lengths = self.forward_batch([waves[i] for i in group])
            out.extend((i, [h[b, :lengths[b]] for h in states]) for b, i in enumerate(group))
        return [s for _, s in sorted(out, key=lambda t: t[0])]
