"""The exact masked front end of wav2vec2-style models: conv encoder, projection, positional conv.

Padding a batch of waveforms changes every output of a group-norm model (the first conv layer
normalises over time) and leaks through the stacked positional convs of data2vec-audio. So the
front end runs on a right-padded batch in a way that keeps each clip's true frames exactly what
the clip alone gives (:meth:`ConvFrontEnd.frontend_batch`): the unpadded convs look only to the
right, so a conv output frame inside a clip's true frame count (computed layer by layer,
``floor((L - k) / s) + 1``) depends only on that clip's samples; a group-norm layer takes each
clip's mean and population variance over its true frames only; the feature projection works
frame by frame; the positional conv sees zeros past each clip's end (padded frames are zeroed
before the conv, and before each of data2vec-audio's stacked conv layers).

Long clips. A clip over ``chunk_frames`` output frames runs its conv feature encoder alone in
chunks of that many output frames (exact: chunks are cut on the frame grid, and a group-norm
first layer gets its statistics over the whole clip in a first pass).

On CUDA the positional conv embedding (kernel 128, 16 groups) runs in float32 as unfold +
batched matmul (:meth:`ConvFrontEnd.enable_pos_conv_gemm`): cuDNN's kernels for it ran at 88
(bfloat16) and 1,050 (float32) audio seconds per second on an H100, a bottleneck of the model.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Sequence

import torch
from torch import nn


def receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> tuple[int, int]:
    """(receptive field, total stride) in samples of a stack of unpadded convs.

    Example:
        >>> receptive_field((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
        (400, 320)
    """
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field, jump


class ConvFrontEnd:
    """Everything before the first transformer layer of a wav2vec2-style model, exact per clip.

    Args:
        model: a bare ``*Model`` (``Wav2Vec2Model``, ``HubertModel``, ...) in eval mode.
        chunk_frames: conv-encoder output frames per chunk on long clips.
    """

    def __init__(self, model: nn.Module, chunk_frames: int) -> None:
        self.model = model
        self.chunk_frames = chunk_frames
        config = model.config
        encoder = model.encoder
        self.stable = type(encoder).__name__.endswith("StableLayerNorm") or bool(
            getattr(config, "do_stable_layer_norm", False)
        )
        self.receptive_field, self.stride = receptive_field(config.conv_kernel, config.conv_stride)
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

    def pos_conv_by_gemm(self, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
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

    def frame_counts(self, num_samples: Sequence[int]) -> list[int]:
        """:meth:`num_frames` of many clips in one call (host integers, no device work)."""
        n = self.model._get_feat_extract_output_lengths(
            torch.tensor(list(num_samples), dtype=torch.long), **self._lengths_kwargs
        )
        return n.reshape(-1).tolist()

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
                x = proj + self.pos_conv_by_gemm(proj)  # (1, T, H)
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

    def conv_lengths(self, num_samples: Sequence[int]) -> list[list[int]]:
        """True output lengths of every conv layer, ``floor((L - k) / s) + 1`` per clip.

        Returns:
            One list per conv layer, one host integer per clip.
        """
        out, n = [], [int(v) for v in num_samples]
        for layer in self.model.feature_extractor.conv_layers:
            kernel, stride = layer.conv.kernel_size[0], layer.conv.stride[0]
            n = [(v - kernel) // stride + 1 for v in n]
            out.append(n)
        return out

    @staticmethod
    def masked_group_norm(
        norm: nn.GroupNorm, y: torch.Tensor, lengths: Sequence[int] | torch.Tensor
    ) -> torch.Tensor:
        """GroupNorm of a right-padded batch with each clip's statistics over its true frames.

        One masked two-pass mean / population variance for the whole batch (no loop over
        clips, no host sync), then one fused ``y * scale + shift``.

        Args:
            norm: the module (its groups, epsilon and affine parameters are used).
            y: ``(batch, channels, frames)`` conv output; frames at or past a clip's length
                are padding and never enter a statistic (whatever they hold).
            lengths: per clip, the true frame count (at least 1); a tensor already on ``y``'s
                device is used as it is.

        Returns:
            ``(batch, channels, frames)`` float32 (GroupNorm runs in float32 under autocast);
            the values of padded frames are meaningless.
        """
        batch, channels, frames = y.shape
        groups = norm.num_groups
        per_group = channels // groups
        y = y.float()
        n = torch.as_tensor(lengths, device=y.device).to(torch.long)
        mask = (torch.arange(frames, device=y.device)[None, :] < n[:, None])[:, None, None, :]  # (B, 1, 1, T)
        yg = y.reshape(batch, groups, per_group, frames)
        count = (n * per_group).to(torch.float32)[:, None]  # (B, 1)
        mean = torch.where(mask, yg, 0.0).sum(dim=(2, 3)) / count  # (B, G)
        dev = torch.where(mask, yg - mean[:, :, None, None], 0.0)
        var = dev.square().sum(dim=(2, 3)) / count  # population variance
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
            return self.pos_conv_by_gemm(x)
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

    def frontend_padded(self, x: torch.Tensor, num_samples: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
        """:meth:`frontend` of a right-padded batch, exact on each clip's true frames.

        The unpadded convs look only to the right, so a conv output frame inside a clip's true
        frame count depends only on the clip's own samples; a group-norm layer takes each clip's
        statistics over its true frames only (:meth:`masked_group_norm`). The feature
        projection works frame by frame, and the positional conv sees zeros past each clip's
        end, as it does on the clip alone (:meth:`_pos_conv_batched`). The lengths travel to
        the device once, through pinned memory: nothing here waits for the device.

        Args:
            x: ``(batch, samples)`` prepared clips, each at least one receptive field long.
            num_samples: per clip, its length in samples (host integers).

        Returns:
            ``(batch, frames, hidden)`` float32, zero past each clip's frames, and the frame
            counts (host integers).

        Raises:
            NotImplementedError: the model's layout is not one this method knows.
        """
        if self.batch_frontend_problem is not None:
            raise NotImplementedError(self.batch_frontend_problem)
        per_layer = self.conv_lengths(num_samples)
        table = to_device(torch.tensor(per_layer, dtype=torch.long), x.device)  # (layers, B)
        h = x[:, None]  # (B, 1, S)
        for j, layer in enumerate(self.model.feature_extractor.conv_layers):
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, nn.GroupNorm):
                h = layer.activation(self.masked_group_norm(norm, layer.conv(h), table[j]))
            else:
                h = layer(h)  # per-frame layer norm or none: exact on true frames
        proj = self.model.feature_projection(h.transpose(1, 2))
        if isinstance(proj, tuple):
            proj = proj[0]
        frames = proj.shape[1]
        mask = (torch.arange(frames, device=x.device)[None, :] < table[-1][:, None])[:, :, None]  # (B, T, 1)
        no_autocast = torch.autocast("cuda", enabled=False) if proj.is_cuda else contextlib.nullcontext()
        with no_autocast:
            proj = proj.float()
            out = proj + self._pos_conv_batched(proj, mask)
        if not self.stable:
            out = self.model.encoder.layer_norm(out)
        return out.masked_fill(~mask, 0.0), per_layer[-1]

    def frontend_batch(self, waves: list[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`frontend_padded` of a list of clips: per clip ``(frames, hidden)`` views.

        Args:
            waves: ``(samples,)`` clips, each at least one receptive field long.

        Raises:
            NotImplementedError: the model's layout is not one this method knows.
        """
        if self.batch_frontend_problem is not None:
            raise NotImplementedError(self.batch_frontend_problem)
        x = nn.utils.rnn.pad_sequence(waves, batch_first=True)  # (B, S)
        out, frames = self.frontend_padded(x, [w.shape[0] for w in waves])
        return [out[b, :n] for b, n in enumerate(frames)]


def to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on ``device`` without waiting: through pinned memory, non-blocking on CUDA.

    (A plain ``.to("cuda")`` of pageable memory synchronises the stream.)
    """
    if device.type != "cuda":
        return host
    return host.pin_memory().to(device, non_blocking=True)
