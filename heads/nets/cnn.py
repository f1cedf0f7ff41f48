"""Spectrogram CNN heads: a ResNet trunk (seed 001) and a multi-exit CNN (seed 003).

Both read log-mel frames (``logmel:N``, a ragged ``(frames, N)`` field, 24 ms hop) as
sequence heads do: ``net(x, lengths)`` with x (batch, frames, n_mels) padded after
``lengths`` true frames. Inside, x becomes a one-channel image (batch, 1, n_mels, frames).

Why the masking below: clips of one batch differ in length, and a plain CNN would let the
padding change a clip's output (convolutions read past the end, batch-norm statistics count
padded cells, average pooling divides by the padded length). Here every layer keeps the
padding at zero, each time-stride halves the true length exactly as it halves the frames
(``ceil``), batch-norm statistics are taken over true cells only, and the final average runs
over true cells only. So a clip's output does not depend on the batch it is in, in eval mode
exactly, and in train mode the padding never enters the statistics.

Training and evaluation windows (both nets, config fields):

* ``crop_frames`` (default 104 = 2.5 s at the 24 ms hop): in train mode each clip is cut to
  a random window of that many frames (uniform start within the clip; shorter clips are kept
  whole and masked). The offsets come from torch's global generator, which
  :func:`heads.training.loop.train_net` seeds, so a run is repeatable. 0 trains on whole clips.
* ``evaluate``: ``clip`` (default) runs the whole clip at once; ``windows`` averages the
  outputs of consecutive ``crop_frames`` windows (the last one aligned to the clip's end),
  regression outputs after the output mode, classification logits as they are.

Both live in the net, not in the training loop, so that :mod:`heads.training` runs these nets
like any sequence head, and a checkpoint's net config says how it was trained and scored.
Which block each output of ``cnn-exits`` leaves after is the ``exits`` field
(:func:`parse_exits`).

Example:
    >>> import torch
    >>> from heads.nets import build_net
    >>> tasks = [("emotion", "regression", 10), ("country", "classification", 4), ("age", "regression", 1)]
    >>> net = build_net("cnn-exits", 64, tasks, channels=(4, 4, 4, 4, 4)).eval()
    >>> net.exit_of
    {'emotion': 5, 'country': 3, 'age': 1}
    >>> out = net(torch.randn(2, 30, 64), torch.tensor([30, 12]))
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'emotion': (2, 10), 'country': (2, 4), 'age': (2, 1)}
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heads.nets.base import HeadNet, check_choice, finish_outputs, register_net
from heads.nets.masking import check_sequence, length_mask

log = logging.getLogger(__name__)

CROP_FRAMES = 104
"""2.5 s at the 24 ms hop of ``extract/melspec.py`` (seed 003's training crops)."""
EVALUATIONS = ("clip", "windows")
EXVO_EXITS = {"age": 1, "country": 3, "emotion": 5}
"""Seed 003's exits for the ExVo outputs: age after block 1, country after 3, emotion after 5."""


# -- masking helpers -------------------------------------------------------------------------
def halve(lengths: Tensor) -> Tensor:
    """True frames after a time stride of 2 (``ceil(L / 2)``), matching the frame count of
    every strided layer here (3x3/pad 1, 7x7/pad 3, 1x1, and the ceil-mode pools)."""
    return (lengths + 1) // 2


def time_mask(lengths: Tensor, frames: int, dtype: torch.dtype) -> Tensor:
    """(batch, 1, 1, frames) 0/1 mask of true frames, broadcastable over (B, C, F, T)."""
    return length_mask(lengths, frames).to(dtype)[:, None, None, :]


def masked_image_mean(h: Tensor, lengths: Tensor) -> Tensor:
    """Mean over frequency and true frames: h (B, C, F, T) zero-padded -> (B, C)."""
    count = (lengths.to(h.dtype) * h.shape[2]).clamp_min(1.0)  # (B,)
    return h.sum(dim=(2, 3)) / count[:, None]


def max_pool_halve(h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """2x2 max pool with ceil mode (odd sizes padded with zeros).

    Zero padding is exact because ``h`` is a ReLU output (>= 0) with zeroed padding: a window
    holding at least one true cell has the same maximum as without the padding, and a window
    of padding only gives 0, so the output keeps zeroed padding too.
    """
    h = F.pad(h, (0, h.shape[3] % 2, 0, h.shape[2] % 2))
    return F.max_pool2d(h, 2), halve(lengths)


def random_crop(x: Tensor, lengths: Tensor, frames: int, *,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A random window of ``frames`` true frames per clip (clips not longer stay whole).

    Args:
        x: (B, T, D) with zeroed padding after ``lengths``.
        lengths: (B,) true frames, in [1, T].
        frames: window length (> 0).
        generator: CPU generator for the offsets; None: torch's global one (seeded by the
            training loop).

    Returns:
        ``(x (B, min(frames, T), D) with zeroed padding, lengths (B,) = min(lengths, frames))``.

    Example:
        >>> x = torch.arange(10.0).view(1, 10, 1)
        >>> y, n = random_crop(x, torch.tensor([10]), 4, generator=torch.Generator().manual_seed(0))
        >>> n.tolist(), y.flatten().tolist() == list(range(int(y[0, 0, 0]), int(y[0, 0, 0]) + 4))
        ([4], True)
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1; got {frames}")
    lens = lengths.long().cpu()
    room = (lens - frames).clamp_min(0)  # (B,) last valid start
    start = (torch.rand(len(lens), generator=generator) * (room + 1)).long().clamp_max(room)
    width = min(frames, x.shape[1])
    idx = (start[:, None] + torch.arange(width)[None, :]).clamp_max(x.shape[1] - 1)  # (B, W)
    rows = torch.arange(len(lens))[:, None]
    out = x[rows.to(x.device), idx.to(x.device)]  # (B, W, D)
    new = lens.clamp_max(frames).to(lengths.device)
    mask = length_mask(new.to(x.device), width)
    return out.masked_fill(~mask[..., None], 0.0), new


def split_windows(x: Tensor, lengths: Tensor, frames: int) -> tuple[Tensor, Tensor, Tensor]:
    """Consecutive windows of ``frames`` frames covering each clip, for window evaluation.

    Clip b gets ``ceil(L_b / frames)`` windows starting at 0, frames, 2 * frames, ...; the last
    one starts at ``L_b - frames`` so that it is full (overlapping its neighbour) when the clip
    is long enough.

    Returns:
        ``(windows (W, min(frames, T), D) zero-padded, lengths (W,), owner (W,) clip index)``.
    """
    lens = lengths.long().cpu()
    counts = (lens + frames - 1) // frames  # (B,)
    owner = torch.repeat_interleave(torch.arange(len(lens)), counts)  # (W,)
    first = torch.cumsum(counts, 0) - counts  # (B,) index of each clip's first window
    within = torch.arange(len(owner)) - first[owner]
    start = torch.minimum(within * frames, (lens[owner] - frames).clamp_min(0))
    width = min(frames, x.shape[1])
    idx = (start[:, None] + torch.arange(width)[None, :]).clamp_max(x.shape[1] - 1)
    out = x[owner[:, None].to(x.device), idx.to(x.device)]  # (W, width, D)
    new = lens[owner].clamp_max(frames)
    mask = length_mask(new.to(x.device), width)
    return out.masked_fill(~mask[..., None], 0.0), new.to(lengths.device), owner


def parse_exits(spec: str | Mapping[str, Any], names: Sequence[str], blocks: int) -> dict[str, int]:
    """Block after which each output leaves the multi-exit CNN (1-based).

    Args:
        spec: ``auto`` (seed 003's :data:`EXVO_EXITS` when the outputs are exactly ExVo's
            ``emotion``, ``country``, ``age``, else every output after the last block);
            ``last``; or ``NAME=BLOCK`` items, e.g. ``"age=1,country=3"`` (a mapping works
            too); outputs not named leave after the last block.
        names: the net's output names.
        blocks: number of blocks.

    Raises:
        ValueError: an unknown output name, a block outside [1, blocks], or a malformed item.

    Example:
        >>> parse_exits("age=2", ["emotion", "age"], 5)
        {'emotion': 5, 'age': 2}
    """
    exits = {n: blocks for n in names}
    if isinstance(spec, str) and spec.strip() in ("auto", "last"):
        if spec.strip() == "auto" and set(names) == set(EXVO_EXITS):
            exits.update({n: min(b, blocks) for n, b in EXVO_EXITS.items()})
        return exits
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    else:
        items = []
        for item in (s.strip() for s in str(spec).replace(";", ",").split(",")):
            if not item:
                continue
            name, sep, block = (p.strip() for p in item.replace(":", "=").partition("="))
            if not sep:
                raise ValueError(f"exits: {item!r} is not NAME=BLOCK (e.g. age=1); spec {spec!r}")
            items.append((name, block))
    for name, block in items:
        if name not in exits:
            raise ValueError(f"exits: {name!r} is not an output of this net; outputs: {list(names)}")
        try:
            value = int(block)
        except (TypeError, ValueError):
            raise ValueError(f"exits: block of {name!r} must be an integer; got {block!r}") from None
        if not 1 <= value <= blocks:
            raise ValueError(f"exits: block of {name!r} must be in [1, {blocks}]; got {value}")
        exits[name] = value
    return exits


def int_tuple(value: Any, field: str) -> tuple[int, ...]:
    """A width list from a config value: a sequence, or ``"32,64,128"`` as ``--net`` gives it.

    Raises:
        ValueError: empty, or an item that is not a positive integer (names ``field``).

    Example:
        >>> int_tuple("2, 2,2,2", "layers")
        (2, 2, 2, 2)
    """
    items = [s for s in value.replace(";", ",").split(",") if s.strip()] if isinstance(value, str) else (
        list(value) if isinstance(value, (list, tuple)) else [value])
    try:
        out = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        out = ()
    if not out or any(v < 1 for v in out) or any(isinstance(v, float) and v != int(v) for v in items):
        raise ValueError(f"{field} must be a non-empty list of positive integers (e.g. 32,64,128); "
                         f"got {value!r}")
    return out


# -- layers ----------------------------------------------------------------------------------
class MaskedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics cover the true (unpadded) cells only.

    Same parameters, buffers and eval behaviour as :class:`torch.nn.BatchNorm2d`; running
    statistics are updated with the unbiased variance, as torch does.
    """

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # x (B, C, F, T), mask (B, 1, 1, T)
        """Normalise x; ``mask`` marks true frames (0/1)."""
        if self.training:
            n = mask.sum() * x.shape[2]  # true cells per channel
            denom = n.clamp_min(1.0)
            mean = (x * mask).sum(dim=(0, 2, 3)) / denom  # (C,)
            var = (((x - mean[None, :, None, None]) ** 2) * mask).sum(dim=(0, 2, 3)) / denom
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1).clamp_min(1.0))
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(unbiased.detach(), m)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)  # (C,)
        return (x - mean[None, :, None, None]) * scale[None, :, None, None] + self.bias[None, :, None, None]


class ConvUnit(nn.Module):
    """Conv (no bias) -> masked batch norm -> ReLU, padding re-zeroed.

    Args:
        c_in, c_out: channels.
        kernel: square kernel size (odd); padding ``kernel // 2``.
        stride: 1 or 2 (2 halves frequency and time).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = MaskedBatchNorm2d(c_out)

    def forward(self, h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:  # h (B, C, F, T)
        """Zero-padded h -> (zero-padded output, true lengths at the output's time rate)."""
        h = self.conv(h)
        if self.stride == 2:
            lengths = halve(lengths)
        m = time_mask(lengths, h.shape[3], h.dtype)
        return torch.relu(self.bn(h, m)) * m, lengths


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016, "Deep residual learning for image recognition",
    CVPR, Fig. 2 / Table 1): two 3x3 convs, identity or 1x1-conv shortcut, ReLU after the sum.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = MaskedBatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = MaskedBatchNorm2d(c_out)
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            self.bn_short = MaskedBatchNorm2d(c_out)

    def forward(self, h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:  # h (B, C, F, T)
        """Zero-padded h -> (zero-padded output, true lengths)."""
        out_lengths = halve(lengths) if self.stride == 2 else lengths
        y = self.conv1(h)
        m = time_mask(out_lengths, y.shape[3], y.dtype)
        y = torch.relu(self.bn1(y, m)) * m
        y = self.bn2(self.conv2(y), m)
        s = h if self.shortcut is None else self.bn_short(self.shortcut(h), m)
        return torch.relu(y + s) * m, out_lengths


class Bottleneck(nn.Module):
    """ResNet bottleneck block (He et al. 2016, Fig. 5 right / Table 1, the 50-layer net):
    1x1 conv to ``width``, 3x3 conv, 1x1 conv to ``4 * width``, each with batch norm, ReLU
    after the first two and after the sum; a 1x1-conv shortcut where the shape changes.

    The stride of a downsampling block sits on the 3x3 conv (as in torchvision's ResNet50; He et
    al.'s own models put it on the first 1x1 conv, and paper 001 does not say which it used).
    """

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = MaskedBatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = MaskedBatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = MaskedBatchNorm2d(c_out)
        self.shortcut: nn.Conv2d | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            self.bn_short = MaskedBatchNorm2d(c_out)

    def forward(self, h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:  # h (B, C, F, T)
        """Zero-padded h -> (zero-padded output, true lengths)."""
        m_in = time_mask(lengths, h.shape[3], h.dtype)
        y = torch.relu(self.bn1(self.conv1(h), m_in)) * m_in
        out_lengths = halve(lengths) if self.stride == 2 else lengths
        y = self.conv2(y)
        m = time_mask(out_lengths, y.shape[3], y.dtype)
        y = torch.relu(self.bn2(y, m)) * m
        y = self.bn3(self.conv3(y), m)
        s = h if self.shortcut is None else self.bn_short(self.shortcut(h), m)
        return torch.relu(y + s) * m, out_lengths


def _task_head(c_in: int, hidden: int, k: int) -> nn.Module:
    """Per-task dense layers: Linear(c_in, hidden)-ReLU-Linear(hidden, k), or one Linear."""
    if hidden <= 0:
        return nn.Linear(c_in, k)
    return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, k))


# -- the shared forward ----------------------------------------------------------------------
class SpectrogramNet(HeadNet):
    """Base of the spectrogram CNNs: validation, training crops, window evaluation.

    Subclasses implement :meth:`predict` on clean inputs (padding zeroed, lengths valid).
    """

    input_kind = "sequence"

    def _check_windows(self) -> None:
        c = self.config
        check_choice(f"{self.name}: evaluate", c.evaluate, EVALUATIONS)
        if c.crop_frames < 0:
            raise ValueError(f"{self.name}: crop_frames must be >= 0 (0: whole clips); got {c.crop_frames}")
        if c.evaluate == "windows" and c.crop_frames == 0:
            raise ValueError(f"{self.name}: evaluate = 'windows' needs crop_frames > 0 (the window length)")
        if not 0.0 <= c.dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be in [0, 1); got {c.dropout}")

    def predict(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """Outputs of zero-padded x (B, T, D) with valid lengths."""
        raise NotImplementedError

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, n_mels)
        """x (batch, frames, n_mels), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}.

        Train mode: a random ``crop_frames`` window per clip; eval mode: the whole clip or the
        mean over windows (``evaluate``).
        """
        x, lengths, _ = check_sequence(x, lengths, self.input_dim)
        c = self.config
        if self.training and c.crop_frames > 0:
            x, lengths = random_crop(x, lengths, c.crop_frames)
            return self.predict(x, lengths)
        if not self.training and c.evaluate == "windows":
            xw, lw, owner = split_windows(x, lengths, c.crop_frames)
            out = self.predict(xw, lw)
            owner = owner.to(x.device)
            counts = torch.bincount(owner, minlength=x.shape[0]).to(x.dtype)[:, None]  # (B, 1)
            if self.tapping:  # the clip's representation: the mean over its windows
                pooled = self.tapped["pooled"]
                self.tap(torch.zeros(x.shape[0], pooled.shape[1], dtype=pooled.dtype,
                                     device=pooled.device).index_add_(0, owner, pooled) / counts)
            return {n: torch.zeros(x.shape[0], v.shape[1], dtype=v.dtype, device=v.device)
                    .index_add_(0, owner, v) / counts for n, v in out.items()}
        return self.predict(x, lengths)


# -- seed 001: ResNet ------------------------------------------------------------------------
@dataclass(frozen=True)
class ResNetConfig:
    """Seed 001's ResNet trunk on log-mel spectrograms (ResNet18 layout).

    Attributes:
        layers: basic blocks per stage; (2, 2, 2, 2) is ResNet18, (3, 4, 6, 3) ResNet34
            (a ``"2,2,2,2"`` string, as ``--net layers=...`` gives it, works too).
        width: channels of the stem and the first stage (doubled at every later stage).
        dropout: before the per-task layers (rate not in the notes: ours).
        head_hidden: width of each task's hidden dense layer; 0: one Linear per task.
        crop_frames: training window in frames (104 = 2.5 s); 0: whole clips.
        evaluate: ``clip`` or ``windows`` (see the module docstring).
        output: regression output mode; seed 001 used linear outputs.
    """

    layers: tuple[int, ...] = (2, 2, 2, 2)
    width: int = 64
    dropout: float = 0.3
    head_hidden: int = 128
    crop_frames: int = CROP_FRAMES
    evaluate: str = "clip"
    output: str = "linear"


@dataclass(frozen=True)
class ResNet34Config(ResNetConfig):
    """ResNet34 layout: (3, 4, 6, 3) basic blocks."""

    layers: tuple[int, ...] = (3, 4, 6, 3)


@dataclass(frozen=True)
class ResNet50Config(ResNetConfig):
    """ResNet50 layout: (3, 4, 6, 3) bottleneck blocks (:class:`Bottleneck`), 4x wider output."""

    layers: tuple[int, ...] = (3, 4, 6, 3)


@register_net
class ResNetHead(SpectrogramNet):
    """ResNet18 on a one-channel log-mel image (seed 001): 7x7/2 conv stem + 3x3/2 max pool,
    stages of basic blocks (stride 2 from the second), masked global average pool, dropout,
    per-task dense layers with linear outputs."""

    name = "resnet18"
    config_type = ResNetConfig
    bottleneck = False

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: ResNetConfig | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        c = self.config
        self._check_windows()
        layers = int_tuple(c.layers, f"{self.name}: layers")
        if int(c.width) < 1:
            raise ValueError(f"{self.name}: width must be >= 1; got {c.width}")
        self.stem = ConvUnit(1, c.width, kernel=7, stride=2)
        blocks: list[nn.Module] = []
        c_in = c.width
        for stage, n in enumerate(layers):
            width = c.width * 2**stage
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                if self.bottleneck:
                    blocks.append(Bottleneck(c_in, width, stride=stride))
                    c_in = width * Bottleneck.expansion
                else:
                    blocks.append(BasicBlock(c_in, width, stride=stride))
                    c_in = width
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(c.dropout)
        self.heads = nn.ModuleList(_task_head(c_in, c.head_hidden, k) for _, _, k in self.tasks)
        self.hidden_dim = c_in

    def predict(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        h = x.transpose(1, 2).unsqueeze(1)  # (B, 1, D, T)
        h, lengths = self.stem(h, lengths)  # (B, width, D/2, T/2)
        # 3x3/2 max pool: implicit -inf padding; ReLU outputs (>= 0) with zeroed padding make
        # the batched and the single-clip maxima equal. The window of the first padded output
        # can still reach the last true frame, so the padding is zeroed again.
        h, lengths = F.max_pool2d(h, 3, stride=2, padding=1), halve(lengths)
        h = h * time_mask(lengths, h.shape[3], h.dtype)
        for block in self.blocks:
            h, lengths = block(h, lengths)
        pooled = masked_image_mean(h, lengths)  # (B, C)
        self.tap(pooled)
        pooled = self.dropout(pooled)
        return finish_outputs(self.tasks, [head(pooled) for head in self.heads], self.config.output)


@register_net
class ResNet34Head(ResNetHead):
    """ResNet34 layout of :class:`ResNetHead` (seed 001)."""

    name = "resnet34"
    config_type = ResNet34Config


@register_net
class ResNet50Head(ResNetHead):
    """ResNet50 layout of :class:`ResNetHead` (paper 001's third trunk): bottleneck blocks."""

    name = "resnet50"
    config_type = ResNet50Config
    bottleneck = True


# -- seed 003: multi-exit CNN ----------------------------------------------------------------
@dataclass(frozen=True)
class MultiExitConfig:
    """Seed 003's multi-exit CNN (Song et al. 2022, DRUW).

    Attributes:
        channels: output channels of each block; its length is the number of blocks (the
            paper: 5 blocks of 2 conv layers; the widths are not in the notes: ours); a
            ``"32,64,128,256,512"`` string (``--net channels=...``) works too.
        exits: which block each output leaves after: ``auto`` | ``last`` | ``NAME=BLOCK,...``
            (see :func:`parse_exits`); ``auto`` is the paper's age 1, country 3, emotion 5
            for the ExVo outputs and the last block otherwise.
        dropout: before each exit's dense layers (ours).
        head_hidden: width of each exit's hidden dense layer; 0: one Linear.
        crop_frames: training window in frames (104 = 2.5 s, the paper's crop); 0: whole clips.
        evaluate: ``clip`` or ``windows``.
        output: regression output mode.
    """

    channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    exits: str | Mapping[str, int] = "auto"
    dropout: float = 0.2
    head_hidden: int = 128
    crop_frames: int = CROP_FRAMES
    evaluate: str = "clip"
    output: str = "linear"


@register_net
class MultiExitCnn(SpectrogramNet):
    """Blocks of two 3x3 conv units and a 2x2 max pool; each output has its own exit (masked
    average pool, dropout, dense layers) after its block, so an early task's loss trains only
    the blocks up to its exit (seed 003)."""

    name = "cnn-exits"
    config_type = MultiExitConfig

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: MultiExitConfig | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        c = self.config
        self._check_windows()
        channels = int_tuple(c.channels, f"{self.name}: channels")
        self.exit_of = parse_exits(c.exits, [t[0] for t in self.tasks], len(channels))
        dims = (1, *channels)
        self.blocks = nn.ModuleList(
            nn.ModuleList([ConvUnit(c_in, c_out), ConvUnit(c_out, c_out)])
            for c_in, c_out in zip(dims[:-1], dims[1:])
        )
        self.dropout = nn.Dropout(c.dropout)
        self.heads = nn.ModuleList(_task_head(dims[self.exit_of[n]], c.head_hidden, k)
                                   for n, _, k in self.tasks)
        self.hidden_dim = dims[max(self.exit_of.values())]  # the deepest exit's channels
        log.debug("%s: exits %s", self.name, self.exit_of)

    def predict(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        h = x.transpose(1, 2).unsqueeze(1)  # (B, 1, D, T)
        pooled: dict[int, Tensor] = {}
        for b, units in enumerate(self.blocks[:max(self.exit_of.values())], start=1):
            for unit in units:
                h, lengths = unit(h, lengths)
            h, lengths = max_pool_halve(h, lengths)  # (B, C_b, D / 2^b, T / 2^b)
            if b in self.exit_of.values():
                pooled[b] = masked_image_mean(h, lengths)  # (B, C_b)
        self.tap(pooled[max(pooled)])  # the deepest exit's: the representation most blocks share
        pooled = {b: self.dropout(p) for b, p in pooled.items()}
        raw = [head(pooled[self.exit_of[n]]) for (n, _, _), head in zip(self.tasks, self.heads)]
        return finish_outputs(self.tasks, raw, self.config.output)


__all__ = ["CROP_FRAMES", "EVALUATIONS", "EXVO_EXITS", "ResNetConfig", "ResNet34Config",
           "ResNet50Config", "ResNetHead", "ResNet34Head", "ResNet50Head", "Bottleneck", "MultiExitConfig", "MultiExitCnn", "MaskedBatchNorm2d",
           "BasicBlock", "ConvUnit", "int_tuple", "random_crop", "split_windows", "parse_exits", "halve",
           "max_pool_halve", "masked_image_mean"]
