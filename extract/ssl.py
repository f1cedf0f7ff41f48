"""Self-supervised speech models from transformers: every layer in one pass, exact pooling.

``ssl:MODEL`` runs a wav2vec2-style checkpoint (wav2vec2 base and large, HuBERT, WavLM,
data2vec-audio; anything ``AutoModel`` loads with a conv feature encoder and a transformer
encoder) and stores, per clip, the pooled hidden states of the selected layers and optionally
the frame sequences of some layers. ``MODEL`` is a hub id (``facebook/wav2vec2-base``) found in
the local Hugging Face cache or downloaded when online, or a folder written by
``save_pretrained`` (``/models/my-hubert``).

Hidden states. Index 0 is the input of the first transformer layer (after the positional conv
embedding, and after the encoder layer norm for post-norm models); index ``i`` is the output of
layer ``i``. This is what transformers 5 reports as ``hidden_states``: for stable-layer-norm
(pre-norm) models the encoder's final layer norm is *not* applied to the last index.

Batching without changing values. Padding a batch of waveforms changes every output of a
group-norm model (the first conv layer normalises over time) and leaks through the stacked
positional convs of data2vec-audio. So the front end (conv feature encoder, feature projection,
positional conv embedding) runs on a right-padded batch in a way that keeps each clip's true
frames exactly what the clip alone gives (:meth:`_Encoder.frontend_batch`): the unpadded convs
look only to the right, so a conv output frame inside a clip's true frame count (computed layer
by layer, ``floor((L - k) / s) + 1``) depends only on that clip's samples; a group-norm layer
takes each clip's mean and population variance over its true frames only; the feature
projection works frame by frame; the positional conv sees zeros past each clip's end (padded
frames are zeroed before the conv, and before each of data2vec-audio's stacked conv layers).
The transformer layers then run on the padded batch under an attention mask that hides padded
keys, where padding cannot reach a true frame. Every statistic is pooled over a clip's true
frames only. At :meth:`SSLExtractor.load` a self-check compares this path with the model's own
``output_hidden_states=True`` forward on two probe clips, and the batched front end with the
per-clip one on a mixed-length batch. A checkpoint whose batched front end differs keeps the
front end clip by clip (:data:`STRATEGY_SPLIT`), as the CPU does by default (there the batch
saves no kernel launches and its large padded conv outputs run slower; set
``frontend_batching = "on"`` to batch anyway); one that fails the first check falls back to
running the model on each clip alone (equal lengths batched). Both say so in the log. The
strategies agree to float rounding (about 3e-6 in float32), so the strategy is provenance,
not identity.

Long clips. A clip over :data:`CONV_CHUNK_FRAMES` output frames leaves the batched front end;
its conv feature encoder runs alone in chunks of that many output frames (exact: chunks are cut
on the frame grid, and a group-norm first layer gets its statistics over the whole clip in a
first pass). The transformer sees a whole clip at once when the attention
is SDPA (memory linear in the length with flash / memory-efficient kernels). WavLM only has an
eager attention whose memory is quadratic; its clips longer than :data:`EAGER_MAX_FULL_FRAMES`
frames (60 s) run in windows of :data:`EAGER_WINDOW_FRAMES` frames with
:data:`EAGER_WINDOW_CONTEXT` frames of context each side (an approximation, recorded in the
identity); shorter clips are exact.

Devices. CPU computes in float32. CUDA runs under ``torch.autocast(dtype=bfloat16)``: matmuls
and convs in bfloat16, normalisations and softmax in float32; pooling is done in float32. The
positional conv embedding (kernel 128, 16 groups) runs in float32 as unfold + batched matmul
on CUDA: cuDNN's kernels for it ran at 88 (bfloat16) and 1,050 (float32) audio seconds per
second on an H100, a bottleneck of the whole model. Inputs travel through pinned memory with
non-blocking copies; results come back through pinned buffers.

Normalisation. When the checkpoint's ``preprocessor_config.json`` says ``do_normalize``, each
clip is scaled to zero mean and unit variance on its own (``(x - mean) / sqrt(var + 1e-7)``,
as ``Wav2Vec2FeatureExtractor`` does) before anything else. Without that file, the fairseq
training setting is assumed: layer-norm conv encoders (large / lv60 / data2vec) were trained on
normalised audio, group-norm ones (base) on raw audio. Clips shorter than the receptive field
(400 samples at 16 kHz) are zero-padded after normalisation to give one frame.

``std`` pooling is the population standard deviation (divisor ``n``).
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from extract.base import (
    SAMPLE_RATE,
    ExtractOptions,
    Extractor,
    ExtractorUnavailable,
    FieldSpec,
    register_extractor,
)
from extract.pooling import PoolingAccumulator, masked_pool, validate_poolings

logger = logging.getLogger(__name__)

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
"""Our hidden-state convention (see the module docstring); part of the identity."""
STORAGE_DTYPES = ("float16", "float32")
DEVICES = ("auto", "cpu", "cuda")
STRATEGY_BATCHED = "batched-frontend+masked-encoder"
STRATEGY_SPLIT = "per-clip-frontend+masked-encoder"
STRATEGY_FORWARD = "per-clip-forward"

_FLOAT16_MAX = float(np.finfo(np.float16).max)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_HASH_BLOCK = 8 << 20
FINETUNED_FILE = "finetuned.json"
"""Written by ``heads/finetune.py`` beside a fine-tuned backbone: its readable ``name``, base
model, run and tasks. Read here for the set's name and provenance only (not its identity: the
weights' hash already tells fine-tuned weights apart)."""


def finetuned_info(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The :data:`FINETUNED_FILE` record of a model folder, or ``None`` (absent or unreadable)."""
    path = Path(folder).expanduser() / FINETUNED_FILE
    try:
        info = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


@dataclass(frozen=True)
class _Source:
    """Where a checkpoint lives.

    Attributes:
        kind: ``folder`` (a local folder or an HF cache snapshot) or ``online`` (the hub).
        directory: the folder holding config.json and the weights (``None`` when online).
        commit: the hub commit when known (cache snapshot, or resolved online).
        weights: the weight files in the folder.
    """

    kind: str
    directory: Path | None
    commit: str | None
    weights: tuple[Path, ...] = ()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_offline() -> bool:
    """Offline mode, read at call time (huggingface_hub reads it once at import)."""
    from huggingface_hub import constants

    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or constants.HF_HUB_OFFLINE


def _how_to_provide(model: str) -> str:
    return (
        f"To provide {model!r}: (1) pass a local folder, ssl:/path/to/folder, holding config.json "
        f"and the weights written by save_pretrained; or (2) on a machine with network run "
        f"`huggingface-cli download {model}` and copy ~/.cache/huggingface (or set HF_HOME) "
        f"here; or (3) go online (unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."
    )


def _folder_weights(directory: Path) -> tuple[Path, ...]:
    """Weight files of a save_pretrained folder (sharded or not); empty when there are none."""
    for index in _WEIGHT_INDEXES:
        if (directory / index).is_file():
            shards = sorted(set(json.loads((directory / index).read_text())["weight_map"].values()))
            paths = tuple(directory / s for s in shards)
            if all(p.is_file() for p in paths):
                return paths
    for name in _WEIGHT_FILES:
        if (directory / name).is_file():
            return (directory / name,)
    return ()


def _snapshot_commit(directory: Path) -> str | None:
    """The commit of an HF cache snapshot folder (``.../snapshots/<commit>``), else ``None``."""
    if directory.parent.name == "snapshots" and _COMMIT_RE.match(directory.name):
        return directory.name
    return None


def _sha256(paths: Sequence[Path]) -> str:
    """SHA-256 over file names and contents, read in blocks."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def _receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> tuple[int, int]:
    """(receptive field, total stride) in samples of a stack of unpadded convs."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field, jump


def _frame_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of matching rows of two ``(frames, dim)`` tensors."""
    return nn.functional.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12)


class _Encoder:
    """The pieces of a wav2vec2-style model, run the way the batched path needs them.

    Args:
        model: a bare ``*Model`` (``Wav2Vec2Model``, ``HubertModel``, ...) in eval mode.
        chunk_frames: conv-encoder output frames per chunk on long clips.
    """

    def __init__(self, model: nn.Module, chunk_frames: int) -> None:
        self.model = model
        self.chunk_frames = chunk_frames
        config = model.config
        encoder = model.encoder
        self.layers = list(encoder.layers)
        self.stable = type(encoder).__name__.endswith("StableLayerNorm") or bool(
            getattr(config, "do_stable_layer_norm", False)
        )
        params = inspect.signature(type(self.layers[0]).forward).parameters
        # WavLM: a (batch, frames) padding mask and a relative position bias passed along.
        self.relative_bias = "position_bias" in params
        self.layer_takes_index = "index" in params
        self.receptive_field, self.stride = _receptive_field(config.conv_kernel, config.conv_stride)
        # The adapter (when a checkpoint has one) only shortens last_hidden_state, never the
        # hidden states; HuBERT's version of the method has no such argument.
        lengths_fn = model._get_feat_extract_output_lengths
        self._lengths_kwargs = (
            {"add_adapter": False} if "add_adapter" in inspect.signature(lengths_fn).parameters else {}
        )
        self.chunkable = self._conv_stack_chunkable()
        self.batch_frontend_problem = self._batch_frontend_problem()
        self.pos_conv_gemm: tuple[torch.Tensor, torch.Tensor] | None = None

    def enable_pos_conv_gemm(self) -> bool:
        """Run a single grouped positional conv as unfold + batched matmul (used on CUDA).

        cuDNN's kernels for this conv (kernel 128, 16 groups) are slow: on an H100, over clips
        of 0.3-15 s, 88 audio seconds per second in bfloat16 and 1,050 in float32, while the rest
        of the front end ran at about 2,000. The matmul form computes the same sums as float32
        GEMMs (its share of GPU time dropped to a quarter of a 5x faster whole). The
        weight-normed kernel is computed once here.

        Returns:
            False (and nothing changes) for other positional embeddings: data2vec-audio's
            stacked convs, HuBERT's batch-normed variant.
        """
        pos = self.model.encoder.pos_conv_embed
        conv = getattr(pos, "conv", None)
        if (
            not isinstance(conv, nn.Conv1d)
            or getattr(pos, "batch_norm", None) is not None
            or not hasattr(pos, "padding")
            or conv.stride != (1,) or conv.dilation != (1,)
            or conv.padding != (conv.kernel_size[0] // 2,)
        ):
            return False
        groups, kernel = conv.groups, conv.kernel_size[0]
        with torch.no_grad():
            weight = conv.weight.detach().float()  # (H, H / G, k), through the weight norm
        per_group = weight.shape[1]
        # (G, Cg * k, Cg): row (c, j) of group g multiplies input channel g * Cg + c at offset j
        w = weight.reshape(groups, per_group, per_group, kernel).permute(0, 2, 3, 1)
        w = w.reshape(groups, per_group * kernel, per_group).contiguous()
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(weight.shape[0])
        self.pos_conv_gemm = (w, bias.to(w.device))
        return True

    def _pos_conv_by_gemm(self, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """The positional conv embedding of ``(B, T, H)`` frames via unfold + bmm.

        Args:
            x: ``(batch, frames, hidden)``; frames past a clip's end must be zero.
            chunk: rows (clips x frames) per matmul, which bounds the memory to
                ``chunk * hidden * kernel`` floats.
        """
        pos = self.model.encoder.pos_conv_embed
        w, bias = self.pos_conv_gemm
        groups, rows, per_group = w.shape
        kernel = rows // per_group
        batch, frames, hidden = x.shape
        pad = kernel // 2
        xp = nn.functional.pad(x.float().transpose(1, 2), (pad, pad))  # (B, H, T')
        xp = xp.reshape(batch, groups, per_group, -1)  # (B, G, Cg, T')
        n_out = frames + 2 * pad - kernel + 1 - pos.padding.num_pad_remove  # = frames
        step = max(1, chunk // batch)
        out = []
        for t0 in range(0, n_out, step):
            t1 = min(n_out, t0 + step)
            cols = xp[..., t0:t1 + kernel - 1].unfold(3, kernel, 1)  # (B, G, Cg, t, k)
            cols = cols.permute(1, 0, 3, 2, 4).reshape(groups, batch * (t1 - t0), rows)
            out.append(torch.bmm(cols, w).reshape(groups, batch, t1 - t0, per_group))
        y = torch.cat(out, dim=2).permute(1, 2, 0, 3).reshape(batch, n_out, hidden) + bias
        return pos.activation(y)  # (B, T, H)

    def _conv_stack_chunkable(self) -> bool:
        for j, layer in enumerate(self.model.feature_extractor.conv_layers):
            conv = getattr(layer, "conv", None)
            if not isinstance(conv, nn.Conv1d) or conv.padding != (0,) or conv.dilation != (1,):
                return False
            if j > 0 and isinstance(getattr(layer, "layer_norm", None), nn.GroupNorm):
                return False
        return True

    def num_frames(self, num_samples: int) -> int:
        """True frame count of a clip (the model's own formula, no adapter)."""
        n = self.model._get_feat_extract_output_lengths(torch.tensor(num_samples), **self._lengths_kwargs)
        return int(n)

    # -- front end: per clip ------------------------------------------------------------
    def conv_features(self, wave: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Conv feature encoder on one clip, in chunks when long.

        Args:
            wave: ``(samples,)`` at least one receptive field long.
            chunk_frames: output frames per chunk (default: the encoder's).

        Returns:
            ``(1, frames, conv_dim)``.
        """
        chunk = chunk_frames or self.chunk_frames
        total = self.num_frames(wave.shape[0])
        if total <= chunk or not self.chunkable:
            return self.model.feature_extractor(wave[None]).transpose(1, 2)
        layers = list(self.model.feature_extractor.conv_layers)
        first = layers[0]
        group_stats = None
        if isinstance(getattr(first, "layer_norm", None), nn.GroupNorm):
            group_stats = self._group_norm_stats(first, wave, chunk * (self.stride // first.conv.stride[0]))
        pieces = []
        for t0 in range(0, total, chunk):
            t1 = min(total, t0 + chunk)
            # Output frames [t0, t1) need samples [t0 * stride, (t1 - 1) * stride + field):
            # t0 * stride lies on every layer's frame grid, so the chunk's frames are exact.
            h = wave[t0 * self.stride:(t1 - 1) * self.stride + self.receptive_field][None, None]
            for j, layer in enumerate(layers):
                if j == 0 and group_stats is not None:
                    h = first.activation(self._group_norm(first, first.conv(h), *group_stats))
                else:
                    h = layer(h)
            pieces.append(h)  # (1, conv_dim, t1 - t0)
        return torch.cat(pieces, dim=2).transpose(1, 2)

    @staticmethod
    def _group_norm_stats(
        first: nn.Module, wave: torch.Tensor, chunk: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-group mean and variance of the first conv's output over the whole clip."""
        conv, norm = first.conv, first.layer_norm
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        total = (wave.shape[0] - kernel) // stride + 1
        groups = norm.num_groups
        s = torch.zeros(groups, dtype=torch.float64, device=wave.device)
        s2 = torch.zeros_like(s)
        for a in range(0, total, chunk):
            b = min(total, a + chunk)
            y = conv(wave[a * stride:(b - 1) * stride + kernel][None, None])  # (1, C, b - a)
            y = y.double().reshape(groups, -1)  # (G, C/G * (b - a))
            s += y.sum(dim=1)
            s2 += y.square().sum(dim=1)
        count = total * norm.num_channels // groups
        mean = s / count
        return mean, (s2 / count - mean.square()).clamp_min(0.0)

    @staticmethod
    def _group_norm(
        first: nn.Module, y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
    ) -> torch.Tensor:
        """GroupNorm of a chunk ``(1, C, t)`` with whole-clip statistics."""
        norm = first.layer_norm
        groups, channels = norm.num_groups, norm.num_channels
        yg = y.double().reshape(1, groups, channels // groups, -1)
        yg = (yg - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + norm.eps)
        out = yg.reshape(1, channels, -1).to(torch.float32)
        if norm.affine:
            out = out * norm.weight[None, :, None] + norm.bias[None, :, None]
        return out

    def frontend(self, wave: torch.Tensor) -> torch.Tensor:
        """Everything before the first transformer layer, on one clip's exact length.

        Args:
            wave: ``(samples,)`` normalised audio, at least one receptive field long.

        Returns:
            ``(frames, hidden)``: hidden state 0 of the clip.
        """
        feats = self.conv_features(wave)  # (1, T, conv_dim)
        proj = self.model.feature_projection(feats)
        if isinstance(proj, tuple):  # (projected, normed extract features); HuBERT: a tensor
            proj = proj[0]
        encoder = self.model.encoder
        # The positional conv runs in float32 even under autocast (see enable_pos_conv_gemm).
        no_autocast = torch.autocast("cuda", enabled=False) if proj.is_cuda else contextlib.nullcontext()
        with no_autocast:
            proj = proj.float()
            if self.pos_conv_gemm is not None:
                x = proj + self._pos_conv_by_gemm(proj)  # (1, T, H)
            else:
                x = proj + encoder.pos_conv_embed(proj)
        if not self.stable:
            x = encoder.layer_norm(x)
        return x[0]

    # -- front end: batched ---------------------------------------------------------------
    def _batch_frontend_problem(self) -> str | None:
        """Why :meth:`frontend_batch` cannot run this model exactly (``None``: it can)."""
        for j, layer in enumerate(self.model.feature_extractor.conv_layers):
            conv = getattr(layer, "conv", None)
            if not isinstance(conv, nn.Conv1d) or conv.padding != (0,) or conv.dilation != (1,):
                return f"conv layer {j} is not an unpadded, undilated Conv1d"
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, nn.GroupNorm) and not type(layer).__name__.endswith("GroupNormConvLayer"):
                return f"conv layer {j} ({type(layer).__name__}) has a group norm in an unknown layout"
        pos = getattr(self.model.encoder, "pos_conv_embed", None)
        stacked = getattr(pos, "layers", None)
        convs = [getattr(m, "conv", None) for m in stacked] if isinstance(stacked, nn.ModuleList) else [
            getattr(pos, "conv", None)
        ]
        for conv in convs:
            if (
                not isinstance(conv, nn.Conv1d)
                or conv.stride != (1,) or conv.dilation != (1,)
                or conv.padding != (conv.kernel_size[0] // 2,)
            ):
                return f"unknown positional embedding {type(pos).__name__}"
        if not isinstance(stacked, nn.ModuleList) and not all(hasattr(pos, a) for a in ("padding", "activation")):
            return f"unknown positional embedding {type(pos).__name__}"
        return None

    def conv_lengths(self, num_samples: torch.Tensor) -> list[torch.Tensor]:
        """True output lengths of every conv layer, ``floor((L - k) / s) + 1`` per clip."""
        out, n = [], num_samples
        for layer in self.model.feature_extractor.conv_layers:
            n = torch.div(n - layer.conv.kernel_size[0], layer.conv.stride[0], rounding_mode="floor") + 1
            out.append(n)
        return out

    @staticmethod
    def masked_group_norm(norm: nn.GroupNorm, y: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        """GroupNorm of a right-padded batch with each clip's statistics over its true frames.

        Args:
            norm: the module (its groups, epsilon and affine parameters are used).
            y: ``(batch, channels, frames)`` conv output; frames at or past a clip's length
                are padding and never enter a statistic.
            lengths: per clip, the true frame count (at least 1).

        Returns:
            ``(batch, channels, frames)`` float32 (GroupNorm runs in float32 under autocast);
            the values of padded frames are meaningless.
        """
        batch, channels, frames = y.shape
        groups = norm.num_groups
        y = y.float()
        # One single-pass (Welford) mean / population variance per clip over its true frames,
        # then one fused pass y * scale + shift over the whole batch.
        stats = [
            torch.var_mean(y[b, :, :n].reshape(groups, -1), dim=1, correction=0)
            for b, n in enumerate(lengths)
        ]
        var = torch.stack([v for v, _ in stats])  # (B, G)
        mean = torch.stack([m for _, m in stats])
        per_group = channels // groups
        rstd = torch.rsqrt(var + norm.eps).repeat_interleave(per_group, dim=1)  # (B, C)
        mean = mean.repeat_interleave(per_group, dim=1)
        scale = rstd * norm.weight.float() if norm.affine else rstd
        shift = (norm.bias.float() if norm.affine else 0.0) - mean * scale
        return torch.addcmul(shift[:, :, None], y, scale[:, :, None])

    def _pos_conv_batched(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Positional conv embedding of a padded batch, equal to each clip's own on true frames.

        A clip run alone sees zeros past its end (the conv's own padding), so padded frames
        are zeroed before every conv: before the single conv (after HuBERT's batch norm when
        there is one), and before each of data2vec-audio's stacked conv layers, whose layer
        norm and bias make padded frames non-zero again.

        Args:
            x: ``(batch, frames, hidden)`` float32.
            mask: ``(batch, frames, 1)`` bool, True on true frames.
        """
        pos = self.model.encoder.pos_conv_embed
        x = x.masked_fill(~mask, 0.0)
        if self.pos_conv_gemm is not None:
            return self._pos_conv_by_gemm(x)
        h, m = x.transpose(1, 2), mask.transpose(1, 2)  # (B, H, T), (B, 1, T)
        stacked = getattr(pos, "layers", None)
        if isinstance(stacked, nn.ModuleList):  # data2vec-audio
            for j, layer in enumerate(stacked):
                h = layer(h if j == 0 else h.masked_fill(~m, 0.0))
            return h.transpose(1, 2)
        if getattr(pos, "batch_norm", None) is not None:  # HuBERT conv_pos_batch_norm
            h = pos.batch_norm(h).masked_fill(~m, 0.0)
        h = pos.activation(pos.padding(pos.conv(h)))
        return h.transpose(1, 2)

    def frontend_batch(self, waves: list[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`frontend` of several clips in one right-padded batch, exact on true frames.

        The unpadded convs look only to the right, so a conv output frame inside a clip's true
        frame count depends only on the clip's own samples; a group-norm layer takes each clip's
        statistics over its true frames only (:meth:`masked_group_norm`). The feature
        projection works frame by frame, and the positional conv sees zeros past each clip's
        end, as it does on the clip alone (:meth:`_pos_conv_batched`).

        Args:
            waves: ``(samples,)`` clips, each at least one receptive field long.

        Returns:
            Per clip ``(frames, hidden)``, views into one padded tensor.

        Raises:
            NotImplementedError: the model's layout is not one this method knows.
        """
        if self.batch_frontend_problem is not None:
            raise NotImplementedError(self.batch_frontend_problem)
        device = waves[0].device
        lengths = torch.tensor([w.shape[0] for w in waves])  # on the host: no device sync
        x = nn.utils.rnn.pad_sequence(waves, batch_first=True)[:, None]  # (B, 1, S)
        for layer, n in zip(self.model.feature_extractor.conv_layers, self.conv_lengths(lengths)):
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, nn.GroupNorm):
                x = layer.activation(self.masked_group_norm(norm, layer.conv(x), n.tolist()))
            else:
                x = layer(x)  # per-frame layer norm or none: exact on true frames
            lengths = n
        proj = self.model.feature_projection(x.transpose(1, 2))
        if isinstance(proj, tuple):
            proj = proj[0]
        frames = proj.shape[1]
        mask = (torch.arange(frames)[None, :] < lengths[:, None])[:, :, None].to(device)  # (B, T, 1)
        encoder = self.model.encoder
        no_autocast = torch.autocast("cuda", enabled=False) if proj.is_cuda else contextlib.nullcontext()
        with no_autocast:
            proj = proj.float()
            x = proj + self._pos_conv_batched(proj, mask)
        if not self.stable:
            x = encoder.layer_norm(x)
        return [x[b, :n] for b, n in enumerate(lengths.tolist())]

    # -- transformer layers: batched -----------------------------------------------------
    def run_layers(
        self, x0: torch.Tensor, lengths: torch.Tensor, stop_after: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield hidden states 0 .. ``stop_after`` of a zero-padded batch.

        Args:
            x0: ``(batch, frames, hidden)`` hidden state 0 of each clip, zero-padded.
            lengths: ``(batch,)`` true frame counts.
            stop_after: last hidden-state index needed; later layers are not run.

        Yields:
            ``(index, hidden)`` with hidden ``(batch, frames, hidden)``; rows past a clip's
            length are padding.
        """
        yield 0, x0
        batch, frames, _ = x0.shape
        lengths = lengths.to(x0.device)
        padded = bool((lengths < frames).any())
        mask2d = torch.arange(frames, device=x0.device)[None, :] < lengths[:, None] if padded else None
        if self.relative_bias or mask2d is None:
            attention_mask = mask2d  # WavLM turns it into a key padding mask itself
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


@register_extractor
class SSLExtractor(Extractor):
    """Pooled hidden states of a transformers speech SSL model (see the module docstring).

    Args:
        arg: hub id or local folder of the checkpoint.
        options: ``layers``, ``poolings``, ``frames_layers``, ``dtype``, ``device`` and
            ``batch_seconds`` are used.

    Example:
        >>> ext = SSLExtractor("facebook/wav2vec2-base", ExtractOptions(layers=(6, 12)))
        >>> ext.readable_name()
        'ssl-wav2vec2-base'
    """

    name = "ssl"
    mode = "batched"

    def __init__(self, arg: str, options: ExtractOptions) -> None:
        super().__init__(arg, options)
        self.conv_chunk_frames = CONV_CHUNK_FRAMES
        self.window_frames = EAGER_WINDOW_FRAMES
        self.window_context = EAGER_WINDOW_CONTEXT
        self.eager_max_full_frames = EAGER_MAX_FULL_FRAMES
        self.frontend_batching = "auto"
        self._resolved = False
        self._weights_id: dict[str, str] | None = None
        self.model_: nn.Module | None = None
        self.padded_frames_ = 0
        self.total_frames_ = 0
        self._warned_fp16 = False

    # -- resolve ---------------------------------------------------------------------------
    def resolve(self) -> None:
        """Validate the options, find the checkpoint without downloading when offline.

        Raises:
            ValueError: a pooling, layer, dtype, device or batch_seconds value is invalid.
            ExtractorUnavailable: the checkpoint is not here and cannot be fetched, or CUDA
                was asked for and is missing.
        """
        opts = self.options
        self.poolings_ = validate_poolings(opts.poolings)
        if opts.dtype not in STORAGE_DTYPES:
            raise ValueError(
                f"dtype {opts.dtype!r} is not supported for ssl; valid: {', '.join(STORAGE_DTYPES)}"
            )
        if opts.device not in DEVICES:
            raise ValueError(f"device {opts.device!r} is not valid; valid: {', '.join(DEVICES)}")
        if not opts.batch_seconds > 0:
            raise ValueError(f"batch_seconds must be > 0, got {opts.batch_seconds!r}")
        if opts.device == "cuda" and not torch.cuda.is_available():
            raise ExtractorUnavailable(
                "device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto"
            )
        self.device_ = torch.device("cuda" if opts.device != "cpu" and torch.cuda.is_available() else "cpu")

        self.source_ = self._locate()
        from transformers import AutoConfig, AutoModel

        where = str(self.source_.directory) if self.source_.directory else self.arg
        try:
            config = AutoConfig.from_pretrained(
                where, local_files_only=self.source_.kind != "online", revision=self.source_.commit
            )
        except Exception as exc:  # noqa: BLE001 - any failure means the checkpoint is unusable
            raise ExtractorUnavailable(f"cannot read the config of {self.arg!r}: {exc}") from exc
        if not all(hasattr(config, k) for k in ("conv_kernel", "conv_stride", "num_hidden_layers")):
            raise ValueError(
                f"{self.arg!r} is a {config.model_type!r} model, not a speech SSL model with a conv "
                f"feature encoder (wav2vec2, hubert, wavlm, data2vec-audio, ...)"
            )
        try:
            model_class = AutoModel._model_mapping[type(config)]
        except KeyError as exc:
            raise ExtractorUnavailable(
                f"transformers has no bare model class for model_type {config.model_type!r} ({self.arg!r})"
            ) from exc
        self.config_ = config
        self.attn_implementation_ = "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"
        n_states = config.num_hidden_layers + 1
        self.layers_ = self._check_layers(opts.layers, n_states, "layers")
        self.frames_layers_ = self._check_layers(opts.frames_layers, n_states, "frames_layers", empty_ok=True)
        self.min_samples_, _ = _receptive_field(config.conv_kernel, config.conv_stride)
        self.do_normalize_, self.normalize_source_ = self._read_do_normalize(config)
        self._resolved = True

    @staticmethod
    def _check_layers(
        layers: Sequence[int] | None, n_states: int, option: str, empty_ok: bool = False
    ) -> tuple[int, ...]:
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

    def _locate(self) -> _Source:
        """Find config + weights: a folder, the HF cache, or (when online) the hub."""
        path = Path(self.arg).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ExtractorUnavailable(
                    f"folder {str(path)!r} has no config.json; it must hold a checkpoint written by "
                    f"save_pretrained (config.json + model.safetensors). " + _how_to_provide(self.arg)
                )
            weights = _folder_weights(path)
            if not weights:
                raise ExtractorUnavailable(
                    f"folder {str(path)!r} has no weights (model.safetensors / pytorch_model.bin). "
                    + _how_to_provide(self.arg)
                )
            return _Source("folder", path, _snapshot_commit(path.resolve()), weights)
        if self.arg.startswith(("/", "./", "../", "~", ".\\")) or path.is_absolute():
            raise ExtractorUnavailable(
                f"model folder {self.arg!r} does not exist. " + _how_to_provide(self.arg)
            )

        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(self.arg, "config.json")
        except Exception as exc:  # noqa: BLE001 - e.g. an id that is not a valid repo name
            raise ExtractorUnavailable(
                f"{self.arg!r} is neither a local folder nor a valid hub id ({exc}). "
                + _how_to_provide(self.arg)
            ) from exc
        if isinstance(cached, str):
            directory = Path(cached).parent
            weights = _folder_weights(directory)
            if weights:
                return _Source("folder", directory, _snapshot_commit(directory), weights)
        if _hub_offline():
            raise ExtractorUnavailable(
                f"model {self.arg!r} is not in the local Hugging Face cache and the hub is offline "
                f"(HF_HUB_OFFLINE=1). " + _how_to_provide(self.arg)
            )
        from huggingface_hub import hf_hub_download

        try:
            config_path = Path(hf_hub_download(self.arg, "config.json"))
        except Exception as exc:  # noqa: BLE001 - unreachable hub, unknown repo, gated, ...
            raise ExtractorUnavailable(
                f"model {self.arg!r} is not in the local Hugging Face cache and the hub cannot serve it "
                f"({type(exc).__name__}: {exc}). " + _how_to_provide(self.arg)
            ) from exc
        return _Source("online", None, _snapshot_commit(config_path.parent))

    def _read_do_normalize(self, config: Any) -> tuple[bool, str]:
        """do_normalize from preprocessor_config.json, else the fairseq training default."""
        path = None
        if self.source_.directory is not None:
            path = self.source_.directory / "preprocessor_config.json"
        elif self.source_.kind == "online":
            from huggingface_hub import hf_hub_download

            try:
                name = "preprocessor_config.json"
                path = Path(hf_hub_download(self.arg, name, revision=self.source_.commit))
            except Exception:  # noqa: BLE001 - the file is optional
                path = None
        if path is not None and path.is_file():
            pre = json.loads(path.read_text())
            rate = pre.get("sampling_rate", SAMPLE_RATE)
            if rate != SAMPLE_RATE:
                raise ExtractorUnavailable(
                    f"{self.arg!r} expects {rate} Hz audio; this pipeline feeds {SAMPLE_RATE} Hz"
                )
            return bool(pre.get("do_normalize", True)), "preprocessor_config.json"
        return getattr(config, "feat_extract_norm", "layer") == "layer", "default (layer-norm conv encoder)"

    def _ensure_resolved(self) -> None:
        if not self._resolved:
            self.resolve()

    # -- description ---------------------------------------------------------------------
    def _weights_identity(self) -> dict[str, str]:
        if self._weights_id is None:
            src = self.source_
            if src.commit is not None:
                self._weights_id = {"hub_commit": src.commit}
            else:
                files = [src.directory / "config.json", *src.weights]
                self._weights_id = {"sha256": _sha256(files)}
        return self._weights_id

    def _long_clip_policy(self) -> str | dict[str, int]:
        if self.attn_implementation_ != "eager":
            return "full"
        return {
            "max_full_frames": self.eager_max_full_frames,
            "window_frames": self.window_frames,
            "context_frames": self.window_context,
        }

    def identity(self) -> dict[str, Any]:
        """Everything that determines the values (hashed into the feature set's key)."""
        self._ensure_resolved()
        return {
            "extractor": self.name,
            "model": self.arg,
            "model_type": self.config_.model_type,
            "weights": self._weights_identity(),
            "layers": list(self.layers_),
            "poolings": list(self.poolings_),
            "frames_layers": list(self.frames_layers_),
            "dtype": self.options.dtype,
            "normalize": self.do_normalize_,
            "sample_rate": SAMPLE_RATE,
            "min_samples": self.min_samples_,
            "hidden_states": HIDDEN_STATES,
            "std": "population",
            "long_clips": self._long_clip_policy(),
        }

    def readable_name(self) -> str:
        """``ssl-<model basename>``, e.g. ``ssl-wav2vec2-base``; a fine-tuned folder gives the
        name recorded in its :data:`FINETUNED_FILE` (``ssl-<base>-ft-<run>``)."""
        path = Path(self.arg.rstrip("/\\"))
        base = path.name
        if path.is_dir() and (info := finetuned_info(path)) and info.get("name"):
            base = str(info["name"])
        if _COMMIT_RE.match(base) and path.parent.name == "snapshots":
            base = path.parent.parent.name.split("--")[-1]  # models--org--name/snapshots/<commit>
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.").lower() or "model"
        return f"ssl-{base}"

    def fields(self) -> dict[str, FieldSpec]:
        """``pooled_<p>`` (n_layers, hidden), ``frames_l<i>`` ragged (hidden,), ``num_frames``."""
        self._ensure_resolved()
        hidden = self.config_.hidden_size
        out = {
            f"pooled_{p}": FieldSpec(
                shape=(len(self.layers_), hidden),
                dtype=self.options.dtype,
                attrs={"layers": list(self.layers_), "pooling": p},
            )
            for p in self.poolings_
        }
        for layer in self.frames_layers_:
            out[f"frames_l{layer}"] = FieldSpec(
                shape=(hidden,), dtype=self.options.dtype, ragged=True, attrs={"layer": layer}
            )
        out["num_frames"] = FieldSpec(shape=(), dtype="int32")
        return out

    def provenance(self) -> dict[str, Any]:
        """Library versions, device, compute dtype, attention implementation, strategy."""
        import transformers

        self._ensure_resolved()
        cuda = self.device_.type == "cuda"
        out = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(self.device_) if cuda else "cpu",
            "compute_dtype": "bfloat16-autocast" if cuda else "float32",
            "attn_implementation": self.attn_implementation_,
            "strategy": getattr(self, "strategy_", None),
            "normalize_source": self.normalize_source_,
            "source": self.source_.kind,
        }
        if self.source_.directory is not None and (info := finetuned_info(self.source_.directory)):
            out["finetuned"] = info
        if self.total_frames_:
            out["padding_ratio"] = round(self.padding_ratio, 4)
        return out

    def warnings_for(self, num_samples: int) -> list[str]:
        """A warning for clips shorter than the receptive field (they are zero-padded)."""
        minimum = getattr(self, "min_samples_", 400)
        if num_samples < minimum:
            return [
                f"clip has {num_samples} samples, fewer than the model's receptive field of {minimum} "
                f"({minimum / SAMPLE_RATE * 1000:.0f} ms); zero-padded to one frame"
            ]
        return []

    @property
    def padding_ratio(self) -> float:
        """Padded frames / all frames the transformer layers ran on so far."""
        return self.padded_frames_ / self.total_frames_ if self.total_frames_ else 0.0

    # -- batching --------------------------------------------------------------------------
    def plan_batches(self, num_samples: Sequence[int]) -> list[list[int]]:
        """Sort clips by length; cut batches of at most ``batch_seconds`` padded audio.

        A batch holds at most :data:`MAX_BATCH_CLIPS` clips; a clip longer than the budget is a
        batch of its own. The plan depends only on the lengths (ties broken by index).
        """
        minimum = getattr(self, "min_samples_", 400)
        budget = self.options.batch_seconds * SAMPLE_RATE
        order = sorted(range(len(num_samples)), key=lambda i: (max(int(num_samples[i]), minimum), i))
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            length = max(int(num_samples[i]), minimum)  # the longest so far: order is ascending
            if current and ((len(current) + 1) * length > budget or len(current) >= MAX_BATCH_CLIPS):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    # -- model -----------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model on the device, pick the batching strategy by a self-check.

        Raises:
            ExtractorUnavailable: the weights cannot be loaded.
        """
        self._ensure_resolved()
        from transformers import AutoModel

        src = self.source_
        where = str(src.directory) if src.directory is not None else self.arg
        try:
            model = AutoModel.from_pretrained(
                where,
                attn_implementation=self.attn_implementation_,
                dtype=torch.float32,
                local_files_only=src.kind != "online",
                revision=src.commit if src.kind == "online" else None,
            )
        except Exception as exc:  # noqa: BLE001
            raise ExtractorUnavailable(f"cannot load the weights of {self.arg!r}: {exc}") from exc
        self._batch_frontend()  # a wrong frontend_batching value fails here, not in the check
        self.model_ = model.eval().to(self.device_)
        self._encoder = _Encoder(self.model_, self.conv_chunk_frames)
        if self.device_.type == "cuda":
            self._encoder.enable_pos_conv_gemm()
        self.strategy_ = self._self_check()
        logger.info(
            "ssl %s: %s on %s, attention %s, strategy %s, normalize=%s",
            self.arg, self.config_.model_type, self.device_, self.attn_implementation_,
            self.strategy_, self.do_normalize_,
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device_.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _self_check(self) -> str:
        """Compare the split path with the model's own forward; fall back when they differ."""
        threshold = 0.999 if self.device_.type == "cpu" else 0.99
        rng = np.random.default_rng(0)
        probes = [self._prepare(0.1 * rng.standard_normal(n).astype(np.float32)) for n in (8_800, 20_800)]
        try:
            with torch.inference_mode(), self._autocast():
                worst = 1.0
                ours = self._split_hidden_states(probes)
                for wave, states in zip(probes, ours):
                    ref = self.model_(wave[None], output_hidden_states=True).hidden_states
                    if len(ref) != len(states):
                        raise RuntimeError(f"model reports {len(ref)} hidden states, expected {len(states)}")
                    for a, r in zip(states, ref):
                        if a.shape != r[0].shape:
                            raise RuntimeError(f"shape {tuple(a.shape)} != model's {tuple(r[0].shape)}")
                        worst = min(worst, float(_frame_cosines(a, r[0]).min()))
                if worst < threshold:
                    raise RuntimeError(f"min frame cosine {worst:.6f} < {threshold}")
                if self._encoder.chunkable:
                    full = self.model_.feature_extractor(probes[1][None]).transpose(1, 2)[0]
                    chunked = self._encoder.conv_features(probes[1], chunk_frames=7)[0]
                    if chunked.shape != full.shape or float(_frame_cosines(chunked, full).min()) < threshold:
                        logger.warning(
                            "ssl %s: chunked conv encoder differs; long clips run unchunked", self.arg
                        )
                        self._encoder.chunkable = False
                batched = self._batch_frontend() and self._check_batched_frontend(probes, threshold)
        except Exception as exc:  # noqa: BLE001 - any failure means: do not trust the split path
            logger.warning(
                "ssl %s (%s): the batched path does not reproduce the model's own forward (%s); "
                "falling back to one clip at a time (equal lengths batched)",
                self.arg, self.config_.model_type, exc,
            )
            return STRATEGY_FORWARD
        logger.debug("ssl self-check: min frame cosine %.6f", worst)
        return STRATEGY_BATCHED if batched else STRATEGY_SPLIT

    def _batch_frontend(self) -> bool:
        """Whether to try the batched front end: ``frontend_batching`` on, off or auto (CUDA).

        On CUDA the per-clip front end is bound by kernel launches (some 30 per clip). On the
        CPU there is nothing to save there, and the padded batch's large conv outputs run
        slower than a clip's (allocation and cache): a base-size model's front end measured
        4.5 audio s/s per clip and 3.2 batched on a 2-core box.
        """
        if self.frontend_batching not in ("auto", "on", "off"):
            raise ValueError(f"frontend_batching {self.frontend_batching!r}; valid: auto, on, off")
        if self.frontend_batching == "auto":
            return self.device_.type == "cuda"
        return self.frontend_batching == "on"

    def _check_batched_frontend(self, probes: list[torch.Tensor], threshold: float) -> bool:
        """Does the batched front end give each clip's own front end on its true frames?"""
        rng = np.random.default_rng(1)
        extra = [self._prepare(0.3 * rng.standard_normal(n).astype(np.float32)) for n in (400, 3_000)]
        waves = [probes[0], extra[0], probes[1], extra[1]]  # mixed lengths, longest inside
        try:
            together = self._encoder.frontend_batch(waves)
            worst = 1.0
            for wave, front in zip(waves, together):
                alone = self._encoder.frontend(wave)
                if front.shape != alone.shape:
                    raise RuntimeError(f"shape {tuple(front.shape)} != {tuple(alone.shape)}")
                worst = min(worst, float(_frame_cosines(front, alone).min()))
            if worst < threshold:
                raise RuntimeError(f"min frame cosine {worst:.6f} < {threshold}")
        except Exception as exc:  # noqa: BLE001 - the per-clip front end stays exact
            logger.warning(
                "ssl %s (%s): the batched front end is not exact here (%s); the front end runs "
                "clip by clip", self.arg, self.config_.model_type, exc,
            )
            return False
        logger.debug("ssl self-check: batched front end, min frame cosine %.6f", worst)
        return True

    def _require_loaded(self) -> None:
        if self.model_ is None:
            self.load()

    # -- computing -------------------------------------------------------------------------
    def _prepare(self, signal: np.ndarray) -> torch.Tensor:
        """Check, normalise, pad to the receptive field, move to the device: ``(samples,)``."""
        x = np.asarray(signal)
        if x.ndim != 1:
            raise ValueError(f"expected a mono clip of shape (samples,), got shape {x.shape}")
        if x.size == 0:
            raise ValueError("clip has no samples")
        if not np.isfinite(x).all():
            raise ValueError("clip contains non-finite samples (nan or inf)")
        x64 = x.astype(np.float64)
        if self.do_normalize_:
            x64 = (x64 - x64.mean()) / np.sqrt(x64.var() + NORM_EPS)
        x32 = x64.astype(np.float32)
        if x32.size < self.min_samples_:
            x32 = np.pad(x32, (0, self.min_samples_ - x32.size))
        t = torch.from_numpy(x32)
        if self.device_.type == "cuda":
            t = t.pin_memory().to(self.device_, non_blocking=True)
        return t

    def hidden_states(self, signal: np.ndarray) -> list[torch.Tensor]:
        """All hidden states of one clip through the batched path, for inspection and tests.

        Args:
            signal: ``(samples,)`` 16 kHz float32 audio.

        Returns:
            ``num_hidden_layers + 1`` tensors ``(frames, hidden)`` float32 on the CPU.
        """
        self._require_loaded()
        with torch.inference_mode(), self._autocast():
            states = self._split_hidden_states(
                [self._prepare(signal)], batched=self.strategy_ == STRATEGY_BATCHED
            )[0]
        return [s.float().cpu() for s in states]

    def _split_hidden_states(self, waves: list[torch.Tensor], batched: bool = False) -> list[list[torch.Tensor]]:
        fronts = self._encoder.frontend_batch(waves) if batched else [self._encoder.frontend(w) for w in waves]
        lengths = torch.tensor([f.shape[0] for f in fronts])
        x0 = nn.utils.rnn.pad_sequence(fronts, batch_first=True)
        states = [h for _, h in self._encoder.run_layers(x0, lengths, self.config_.num_hidden_layers)]
        return [[h[b, : int(n)] for h in states] for b, n in enumerate(lengths)]

    def compute_batch(self, signals: list[np.ndarray]) -> list[dict[str, np.ndarray] | Exception]:
        """Features of a batch of clips; a clip that fails gives its exception.

        Args:
            signals: ``(samples,)`` float32 16 kHz clips.

        Returns:
            Per clip: ``pooled_<p>`` ``(n_layers, hidden)``, ``frames_l<i>`` ``(frames, hidden)``
            in the storage dtype and ``num_frames`` (int32 scalar), or the clip's exception.
        """
        self._require_loaded()
        results: list[dict[str, np.ndarray] | Exception | None] = [None] * len(signals)
        waves: dict[int, torch.Tensor] = {}
        for i, signal in enumerate(signals):
            try:
                waves[i] = self._prepare(signal)
            except Exception as exc:  # noqa: BLE001 - one bad clip never sinks the batch
                results[i] = exc
        with torch.inference_mode(), self._autocast():
            if self.strategy_ in (STRATEGY_BATCHED, STRATEGY_SPLIT):
                self._compute_split(waves, results)
            else:
                self._compute_forward(waves, results)
        return results  # type: ignore[return-value]

    def _frontends(self, waves: dict[int, torch.Tensor], results: list) -> dict[int, torch.Tensor]:
        """Hidden state 0 ``(T, H)`` of each clip; a clip that fails gets its exception.

        With :data:`STRATEGY_BATCHED`, clips sorted by length go through the batched front end
        in groups of at most :data:`FRONTEND_BATCH_SECONDS` padded audio whose longest clip is
        at most :data:`FRONTEND_MAX_STRETCH` times the shortest (padding wastes compute, and on
        the CPU cache); clips longer than one conv chunk (memory) and the clips of a group that
        fails run one by one.
        """
        fronts: dict[int, torch.Tensor] = {}
        alone = list(waves)
        if self.strategy_ == STRATEGY_BATCHED:
            alone = [i for i in waves if self._encoder.num_frames(waves[i].shape[0]) > self._encoder.chunk_frames]
            short = sorted((i for i in waves if i not in set(alone)), key=lambda i: (waves[i].shape[0], i))
            budget = FRONTEND_BATCH_SECONDS * SAMPLE_RATE
            groups: list[list[int]] = []
            for i in short:  # ascending: the clip added is the longest of its group
                n = waves[i].shape[0]
                if (
                    groups
                    and (len(groups[-1]) + 1) * n <= budget
                    and n <= FRONTEND_MAX_STRETCH * waves[groups[-1][0]].shape[0]
                ):
                    groups[-1].append(i)
                else:
                    groups.append([i])
            for group in groups:
                try:
                    fronts.update(zip(group, self._encoder.frontend_batch([waves[i] for i in group])))
                except Exception as exc:  # noqa: BLE001 - e.g. out of memory: clip by clip
                    logger.warning("ssl front end of %d clips failed (%s); clip by clip", len(group), exc)
                    if self.device_.type == "cuda":
                        torch.cuda.empty_cache()
                    alone.extend(group)
        for i in alone:
            try:
                fronts[i] = self._encoder.frontend(waves[i])  # (T, H)
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        return fronts

    def _compute_split(self, waves: dict[int, torch.Tensor], results: list) -> None:
        fronts = self._frontends(waves, results)
        # A clip longer than the batch budget runs alone (unpadded, so SDPA needs no mask and
        # keeps its linear-memory kernels), whatever batch the caller formed.
        budget = self._encoder.num_frames(int(self.options.batch_seconds * SAMPLE_RATE))
        for i in [i for i, f in fronts.items() if f.shape[0] > budget or self._windowed(f.shape[0])]:
            front = fronts.pop(i)
            try:
                if self._windowed(front.shape[0]):
                    results[i] = self._run_windowed(front)
                else:
                    results[i] = self._run_batched([front])[0]
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        if not fronts:
            return
        order = list(fronts)
        try:
            outs = self._run_batched([fronts[i] for i in order])
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: retry clip by clip
            if len(order) == 1:
                results[order[0]] = exc
                return
            logger.warning("ssl batch of %d clips failed (%s); retrying one clip at a time", len(order), exc)
            if self.device_.type == "cuda":
                torch.cuda.empty_cache()
            outs = []
            for i in order:
                try:
                    outs.append(self._run_batched([fronts[i]])[0])
                except Exception as exc_one:  # noqa: BLE001
                    outs.append(exc_one)
        for i, out in zip(order, outs):
            results[i] = out

    def _windowed(self, frames: int) -> bool:
        return self.attn_implementation_ == "eager" and frames > self.eager_max_full_frames

    def _compute_forward(self, waves: dict[int, torch.Tensor], results: list) -> None:
        """Fallback: the model's own forward on each clip, equal lengths batched (no padding)."""
        by_length: dict[int, list[int]] = {}
        for i, wave in waves.items():
            by_length.setdefault(wave.shape[0], []).append(i)
        for group in by_length.values():
            for start in range(0, len(group), MAX_BATCH_CLIPS):
                chunk = group[start:start + MAX_BATCH_CLIPS]
                try:
                    batch = torch.stack([waves[i] for i in chunk])  # (B, samples), equal lengths
                    states = self.model_(batch, output_hidden_states=True).hidden_states
                    frames = states[0].shape[1]
                    outs = self._collect(enumerate(states), torch.full((len(chunk),), frames))
                except Exception as exc:  # noqa: BLE001
                    outs = [exc] * len(chunk)
                for i, out in zip(chunk, outs):
                    results[i] = out

    def _run_batched(self, fronts: list[torch.Tensor]) -> list[dict[str, np.ndarray] | Exception]:
        lengths = torch.tensor([f.shape[0] for f in fronts])
        x0 = nn.utils.rnn.pad_sequence(fronts, batch_first=True)  # (B, T, H)
        padded = x0.shape[0] * x0.shape[1]
        self.padded_frames_ += padded - int(lengths.sum())
        self.total_frames_ += padded
        logger.debug(
            "ssl batch: %d clips, %d frames, padding ratio %.3f (cumulative %.3f)",
            len(fronts), x0.shape[1], 1 - int(lengths.sum()) / padded, self.padding_ratio,
        )
        stop = max(self.layers_ + self.frames_layers_)
        return self._collect(self._encoder.run_layers(x0, lengths, stop), lengths)

    def _collect(
        self, states: Iterator[tuple[int, torch.Tensor]], lengths: torch.Tensor
    ) -> list[dict[str, np.ndarray] | Exception]:
        """Pool the selected layers of a padded batch and keep the frames asked for."""
        wanted, frames_wanted = set(self.layers_), set(self.frames_layers_)
        pooled: list[torch.Tensor] = []  # per selected layer: (B, P, H)
        frames: dict[int, torch.Tensor] = {}
        for i, h in states:
            if i in wanted:
                pools = masked_pool(h.float(), lengths, self.poolings_)
                pooled.append(torch.stack([pools[p] for p in self.poolings_], dim=1))
            if i in frames_wanted:
                frames[i] = h.float()
        host = self._to_host(torch.stack(pooled, dim=2))  # (B, P, n_layers, H)
        host_frames = {i: self._to_host(f) for i, f in frames.items()}
        outs: list[dict[str, np.ndarray] | Exception] = []
        for b, n in enumerate(lengths.tolist()):
            clip_frames = {i: f[b, :n] for i, f in host_frames.items()}
            outs.append(self._finish({p: host[b, k] for k, p in enumerate(self.poolings_)}, clip_frames, n))
        return outs

    def _run_windowed(self, x0: torch.Tensor) -> dict[str, np.ndarray] | Exception:
        """A long clip of an eager-attention model, window by window (approximate)."""
        total = x0.shape[0]
        acc = PoolingAccumulator(self.poolings_)
        frames: dict[int, list[torch.Tensor]] = {i: [] for i in self.frames_layers_}
        stop = max(self.layers_ + self.frames_layers_)
        for c0 in range(0, total, self.window_frames):
            c1 = min(total, c0 + self.window_frames)
            s, e = max(0, c0 - self.window_context), min(total, c1 + self.window_context)
            selected = []
            for i, h in self._encoder.run_layers(x0[None, s:e], torch.tensor([e - s]), stop):
                core = h[0, c0 - s:c1 - s].float()  # (c1 - c0, H)
                if i in self.layers_:
                    selected.append(core)
                if i in frames:
                    frames[i].append(self._to_host(core))
            acc.update(torch.stack(selected, dim=1))  # (c1 - c0, n_layers, H)
        pooled = {p: self._to_host(v) for p, v in acc.result().items()}
        return self._finish(pooled, {i: torch.cat(f) for i, f in frames.items()}, total)

    def _to_host(self, t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "cuda":
            return t
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        host.copy_(t, non_blocking=True)
        torch.cuda.current_stream(t.device).synchronize()
        return host

    def _finish(
        self, pooled: dict[str, torch.Tensor], frames: dict[int, torch.Tensor], num_frames: int
    ) -> dict[str, np.ndarray] | Exception:
        """Host tensors of one clip -> the stored arrays; non-finite output is an error."""
        out: dict[str, np.ndarray] = {}
        for p, v in pooled.items():
            out[f"pooled_{p}"] = v.numpy()
        for i, f in frames.items():
            out[f"frames_l{i}"] = f.numpy()
        for key, value in out.items():
            if not np.isfinite(value).all():
                return ValueError(f"the model produced non-finite values in {key}")
            out[key] = self._to_storage(value)
        out["num_frames"] = np.array(num_frames, dtype=np.int32)
        return out

    def _to_storage(self, value: np.ndarray) -> np.ndarray:
        if self.options.dtype == "float32":
            return np.ascontiguousarray(value, dtype=np.float32)
        if np.abs(value).max(initial=0.0) > _FLOAT16_MAX:
            if not self._warned_fp16:
                logger.warning(
                    "ssl %s: values beyond the float16 range were clipped to +-%g; use --dtype float32",
                    self.arg, _FLOAT16_MAX,
                )
                self._warned_fp16 = True
            value = np.clip(value, -_FLOAT16_MAX, _FLOAT16_MAX)
        return value.astype(np.float16)
