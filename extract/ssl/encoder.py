"""The model as the extractor runs it: a front end, then the transformer layers under a mask.

An *encoder family* is one class here: it knows which checkpoints it runs
(:meth:`Encoder.accepts`), how a clip becomes the model's input (:meth:`Encoder.prepare` per
clip on the host, :meth:`Encoder.prepare_padded` for a padded batch on the device), the clip's
true frame count, hidden state 0 per clip and batched (its front end), the layers on a padded
batch, and the model's own forward (the reference of the self-check). The extractor asks
:func:`extract.ssl.families.encoder_family` for the class of a config.

Hidden states. Index 0 is the input of the first transformer layer (after the positional conv
embedding, and after the encoder layer norm for post-norm models); index ``i`` is the output of
layer ``i``. This is what transformers 5 reports as ``hidden_states``: for stable-layer-norm
(pre-norm) models the encoder's final layer norm is *not* applied to the last index.

The transformer layers run on the padded batch under an attention mask that hides padded keys,
where padding cannot reach a true frame.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch import nn

from extract.ssl.config import NORM_EPS
from extract.ssl.frontend import ConvFrontEnd, receptive_field, to_device
from extract.ssl.planning import equal_length_groups


def check_clip(signal: np.ndarray) -> np.ndarray:
    """The clip as an array, after checking it is 1-D, not empty and finite.

    Raises:
        ValueError: the clip is not 1-D, is empty, or holds nan / inf.
    """
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"expected a mono clip of shape (samples,), got shape {x.shape}")
    if x.size == 0:
        raise ValueError("clip has no samples")
    if not np.isfinite(x).all():
        raise ValueError("clip contains non-finite samples (nan or inf)")
    return x


def normalise_padded(x: torch.Tensor, num_samples: torch.Tensor) -> torch.Tensor:
    """:func:`prepare_wave`'s normalisation of a zero-padded batch, on its device, in float64.

    Each clip gets its own mean and population variance over its true samples; padding stays
    zero. This is the batched form the GPU path uses (one kernel sequence for the batch, no
    host work per clip).

    Args:
        x: ``(batch, samples)`` float32, zero past each clip's end.
        num_samples: ``(batch,)`` int64 true lengths on ``x``'s device (at least 1).

    Returns:
        ``(batch, samples)`` float32.
    """
    mask = torch.arange(x.shape[1], device=x.device)[None, :] < num_samples[:, None]  # (B, S)
    x64 = x.double()
    count = num_samples.double()[:, None]  # (B, 1)
    mean = torch.where(mask, x64, 0.0).sum(dim=1, keepdim=True) / count
    centred = torch.where(mask, x64 - mean, 0.0)
    var = centred.square().sum(dim=1, keepdim=True) / count
    return (centred / torch.sqrt(var + NORM_EPS)).to(torch.float32)


def prepare_wave(signal: np.ndarray, *, do_normalize: bool, min_samples: int) -> np.ndarray:
    """Check one clip, normalise it (when the checkpoint says so), pad it to one receptive field.

    Normalisation is ``(x - mean) / sqrt(var + 1e-7)`` in float64, as
    ``Wav2Vec2FeatureExtractor`` does, then float32; zero padding comes after it.

    Args:
        signal: ``(samples,)`` 16 kHz audio.
        do_normalize: scale to zero mean and unit variance.
        min_samples: the receptive field; shorter clips are zero-padded to it.

    Returns:
        ``(max(samples, min_samples),)`` float32.

    Raises:
        ValueError: the clip is not 1-D, is empty, or holds nan / inf.

    Example:
        >>> prepare_wave(np.array([1.0, 3.0], np.float32), do_normalize=True, min_samples=3)
        array([-0.99999994,  0.99999994,  0.        ], dtype=float32)
    """
    x64 = check_clip(signal).astype(np.float64)
    if do_normalize:
        x64 = (x64 - x64.mean()) / np.sqrt(x64.var() + NORM_EPS)
    x32 = x64.astype(np.float32)
    if x32.size < min_samples:
        x32 = np.pad(x32, (0, min_samples - x32.size))
    return x32


class Encoder(ConvFrontEnd):
    """A wav2vec2-style model (wav2vec2, HuBERT, WavLM, data2vec-audio): waveform in, a conv
    feature encoder, a transformer encoder.

    Args:
        model: a bare ``*Model`` in eval mode.
        chunk_frames: conv-encoder output frames per chunk on long clips.
    """

    family: ClassVar[str] = "conv-waveform"
    required: ClassVar[tuple[str, ...]] = ("conv_kernel", "conv_stride", "num_hidden_layers")
    exact_forward: ClassVar[str | None] = None
    """Set by a family whose only exact path is the model's own forward: why (provenance).
    The self-check then checks :meth:`forward_batch` and picks the per-clip forward."""
    normalizes_waveform: ClassVar[bool] = True
    """False for families whose feature extractor computes features (log-mel, fbank)."""

    def __init__(self, model: nn.Module, chunk_frames: int) -> None:
        super().__init__(model, chunk_frames)
        self.layers = list(model.encoder.layers)
        params = inspect.signature(type(self.layers[0]).forward).parameters
        # WavLM: a (batch, frames) padding mask and a relative position bias passed along.
        self.relative_bias = "position_bias" in params
        self.layer_takes_index = "index" in params

    @classmethod
    def accepts(cls, config: Any) -> bool:
        """Whether this family runs checkpoints with this transformers config."""
        return all(hasattr(config, k) for k in cls.required)

    @staticmethod
    def num_states(config: Any) -> int:
        """Hidden states the model reports: its layers + 1 (the input of the first layer)."""
        return int(config.num_hidden_layers) + 1

    @staticmethod
    def hidden_size(config: Any) -> int:
        """Width of every hidden state."""
        return int(config.hidden_size)

    @staticmethod
    def min_samples(config: Any) -> int:
        """The shortest input in samples (one receptive field); shorter clips are padded."""
        return receptive_field(config.conv_kernel, config.conv_stride)[0]

    @staticmethod
    def frame_timing(config: Any) -> tuple[int, float]:
        """(hop, centre of frame 0) in samples: frame ``t`` is centred on sample
        ``t * hop + centre``. Conv front ends: the total stride and half the receptive field."""
        field, hop = receptive_field(config.conv_kernel, config.conv_stride)
        return hop, field / 2.0

    @staticmethod
    def prepare(signal: np.ndarray, *, do_normalize: bool, min_samples: int) -> np.ndarray:
        """One clip as this family's input on the host: :func:`prepare_wave`."""
        return prepare_wave(signal, do_normalize=do_normalize, min_samples=min_samples)

    @staticmethod
    def prepare_padded(x: torch.Tensor, num_samples: torch.Tensor, *, do_normalize: bool) -> torch.Tensor:
        """A zero-padded batch of checked clips as this family's input, on the device.

        Args:
            x: ``(batch, samples)`` float32 raw audio on the device, zero past each clip's end
                and at least one receptive field wide.
            num_samples: ``(batch,)`` int64 true lengths on the device.
            do_normalize: normalise each clip (:func:`normalise_padded`).
        """
        return normalise_padded(x, num_samples) if do_normalize else x

    def hidden_states(self, waves: list[torch.Tensor], *, batched: bool) -> list[list[torch.Tensor]]:
        """Every hidden state ``(frames, hidden)`` of each clip through the split path.

        Args:
            waves: prepared clips on the model's device.
            batched: run the front end on the padded batch (else clip by clip).
        """
        fronts = self.frontend_batch(waves) if batched else [self.frontend(w) for w in waves]
        lengths = torch.tensor([f.shape[0] for f in fronts])
        x0 = nn.utils.rnn.pad_sequence(fronts, batch_first=True)
        states = [h for _, h in self.run_layers(x0, lengths, self.num_states(self.model.config) - 1)]
        return [[h[b, : int(n)] for h in states] for b, n in enumerate(lengths)]

    @classmethod
    def check_family_options(cls, options: Any, label: str) -> None:
        """Reject options that do not apply to this family.

        Raises:
            ValueError: ``whisper_input`` is not ``padded`` (it applies to Whisper only).
        """
        if options.whisper_input != "padded":
            raise ValueError(f"--whisper-input {options.whisper_input} applies to Whisper checkpoints "
                             f"only; {label!r} is a {cls.family} model (use --whisper-input padded)")

    @classmethod
    def input_identity(cls, config: Any, options: Any) -> dict[str, Any] | None:
        """What a family adds to the identity about its input (``None``: nothing)."""
        return None

    @classmethod
    def long_clip_policy(cls, config: Any, options: Any) -> dict[str, Any] | None:
        """The family's own long-clip policy for the identity (``None``: the extractor's)."""
        return None

    def configure(self, options: Any) -> None:
        """Read the family's own options (none here)."""

    def forward_groups(self, lengths: dict[int, int]) -> list[list[int]]:
        """Clips whose model forward may run together exactly: equal lengths (no padding)."""
        return equal_length_groups(lengths)

    def forward_batch(self, waves: list[torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], list[int]]:
        """The model's own forward on one group of :meth:`forward_groups`.

        Returns:
            The hidden states ``(batch, frames, hidden)`` (rows past a clip's frames are
            padding) and each clip's true frame count.
        """
        states = self.reference_hidden_states(torch.stack(waves))
        return states, [states[0].shape[1]] * len(waves)

    def reference_hidden_states(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's own ``output_hidden_states=True`` forward on an unpadded batch."""
        return self.model(inputs, output_hidden_states=True).hidden_states

    def run_layers(
        self, x0: torch.Tensor, lengths: torch.Tensor, stop_after: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield hidden states 0 .. ``stop_after`` of a zero-padded batch.

        Args:
            x0: ``(batch, frames, hidden)`` hidden state 0 of each clip, zero-padded.
            lengths: ``(batch,)`` true frame counts on the host (integers or a CPU tensor).
            stop_after: last hidden-state index needed; later layers are not run.

        Yields:
            ``(index, hidden)`` with hidden ``(batch, frames, hidden)``; rows past a clip's
            length are padding.
        """
        yield 0, x0
        batch, frames, _ = x0.shape
        host = [int(n) for n in lengths]  # host integers: deciding on padding needs no sync
        mask2d = None
        if min(host) < frames:
            n = to_device(torch.tensor(host, dtype=torch.long), x0.device)
            mask2d = torch.arange(frames, device=x0.device)[None, :] < n[:, None]  # (B, T)
        if self.relative_bias or mask2d is None:
            attention_mask = mask2d  # WavLM turns it into a key padding mask itself
        elif self.model.config._attn_implementation == "sdpa":
            # What create_bidirectional_mask returns for SDPA (True = attend), built without its
            # padding_mask.all() test, which waits for the device.
            attention_mask = mask2d[:, None, None, :].expand(batch, 1, frames, frames)
        else:
            from transformers.masking_utils import create_bidirectional_mask

            attention_mask = create_bidirectional_mask(
                config=self.model.config, inputs_embeds=x0, attention_mask=mask2d
            )
        h, position_bias = x0, None
        for i, layer in enumerate(self.layers, start=1):
            if i > stop_after:
                return
            if self.relative_bias:
                extra = {"index": i - 1} if self.layer_takes_index else {}
                with warnings.catch_warnings():
                    # WavLM pairs a bool key padding mask with a float bias; torch warns, the
                    # model's own forward does the same.
                    warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
                    h, position_bias = layer(
                        h, attention_mask=attention_mask, position_bias=position_bias, **extra
                    )
            else:
                out = layer(h, attention_mask=attention_mask)
                h = out[0] if isinstance(out, tuple) else out
            yield i, h

