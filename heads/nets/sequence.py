"""Sequence heads over frames (``net(x, lengths)``): seed 002's LSTM and seed 001's fc128,
lstm128, netvlad, autopool and mean3; padding never reaches an output."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from extract.pooling import POOLINGS
from heads.nets.base import REGRESSION, HeadNet, check_choice, finish_outputs, regression_output, register_net
from heads.nets.masking import check_sequence, length_mask, masked_mean, pool_frames, window_means


def windowed(x: Tensor, lengths: Tensor, mask: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, lengths, mask)`` over window means (:func:`window_means`) when ``width`` > 0.

    The nets' ``window_frames`` option: average the frames in non-overlapping windows first
    (125 = 2.5 s of 20 ms frames, as paper 001 has one Conformer embedding per "approximately
    2.5s non-overlapping window"); 0 keeps every frame.

    Raises:
        ValueError: a negative width.
    """
    if width < 0:
        raise ValueError(f"window_frames must be >= 0 (0: every frame); got {width}")
    if width == 0:
        return x, lengths, mask
    xw, lw = window_means(x, lengths, width)
    return xw, lw, length_mask(lw, xw.shape[1])


def run_lstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Run on true frames only: x (B, T, D) -> (frame outputs (B, T, H), last hidden (B, H))."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, (h_n, _) = lstm(packed)
    frames, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return frames, h_n[-1]  # h_n is restored to the input order for unsorted packs



@dataclass(frozen=True)
class LstmConfig:
    """Seed 002: LSTM over frames, per-frame linear, pooling over true frames."""

    hidden: int = 512
    layers: int = 2
    pooling: str = "last"
    dropout: float = 0.0
    output: str = "linear"


@register_net
class LstmHead(HeadNet):
    """LSTM(D, hidden, layers) -> per-frame Linear(hidden, sum k) -> pool true frames (seed 002).

    ``first`` is the first frame's output, ``last`` the last true frame's (best in seed 002),
    ``max``/``mean`` over true frames. The LSTM runs on a packed sequence, so padding is
    never read.
    """

    name = "lstm"
    config_type = LstmConfig
    input_kind = "sequence"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: LstmConfig | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        c = self.config
        check_choice("lstm: pooling", c.pooling, POOLINGS)
        self.lstm = nn.LSTM(self.input_dim, c.hidden, num_layers=c.layers, batch_first=True,
                            dropout=c.dropout if c.layers > 1 else 0.0)
        self.frame_out = nn.Linear(c.hidden, sum(k for _, _, k in self.tasks))
        self.hidden_dim, self.hidden_frames = c.hidden, True

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = check_sequence(x, lengths, self.input_dim)
        frames, _ = run_lstm(self.lstm, x, lengths)  # (B, T, hidden)
        self.tap(None, frames, lengths)
        pooled = pool_frames(self.frame_out(frames), lengths, mask, self.config.pooling)  # (B, S)
        raw = pooled.split([k for _, _, k in self.tasks], dim=-1)
        return finish_outputs(self.tasks, raw, self.config.output)


FC128_ORDERS = ("pool-fc", "fc-pool")


@dataclass(frozen=True)
class Fc128Config:
    """Paper 001's Conformer+FC head.

    Attributes:
        hidden: units of the shared FC layer (128).
        order: ``pool-fc`` (the paper: "A single shared fully connected (FC) layer of 128
            units on top of the averaged feature") or ``fc-pool`` (FC on every frame, then the
            mean; with the ReLU the two differ).
        window_frames: see :func:`windowed`.
        output: regression output mode.
    """

    hidden: int = 128
    order: str = "pool-fc"
    window_frames: int = 0
    output: str = "linear"


@register_net
class Fc128Head(HeadNet):
    """Mean over true frames, Linear(D,128)+ReLU, Linear per task (paper 001); ``order =
    fc-pool`` runs the FC on every frame before the mean. The ReLU is ours (the paper names
    no activation for this layer)."""

    name = "fc128"
    config_type = Fc128Config
    input_kind = "sequence"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: Fc128Config | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        check_choice("fc128: order", self.config.order, FC128_ORDERS)
        self.frame = nn.Sequential(nn.Linear(self.input_dim, self.config.hidden), nn.ReLU())
        self.heads = self._task_linears(self.config.hidden)
        self.hidden_dim = self.config.hidden
        self.hidden_frames = self.config.order == "fc-pool"

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = check_sequence(x, lengths, self.input_dim)
        x, lengths, mask = windowed(x, lengths, mask, self.config.window_frames)
        if self.config.order == "pool-fc":
            h = self.frame(masked_mean(x, mask))  # (B, hidden)
            self.tap(h)
        else:
            frames = self.frame(x)  # (B, T, hidden)
            h = masked_mean(frames, mask)  # (B, hidden)
            self.tap(h, frames, lengths)
        return finish_outputs(self.tasks, [head(h) for head in self.heads], self.config.output)


@dataclass(frozen=True)
class Lstm128Config:
    """Seed 001 LSTM head: one LSTM layer, last true frame."""

    hidden: int = 128
    window_frames: int = 0
    output: str = "linear"


@register_net
class Lstm128Head(HeadNet):
    """LSTM(D,128), hidden state at the last true frame, Linear per task (seed 001)."""

    name = "lstm128"
    config_type = Lstm128Config
    input_kind = "sequence"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: Lstm128Config | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        self.lstm = nn.LSTM(self.input_dim, self.config.hidden, batch_first=True)
        self.heads = self._task_linears(self.config.hidden)
        self.hidden_dim, self.hidden_frames = self.config.hidden, True

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = check_sequence(x, lengths, self.input_dim)
        x, lengths, _ = windowed(x, lengths, mask, self.config.window_frames)
        frames, h = run_lstm(self.lstm, x, lengths)  # (B, T, hidden), (B, hidden)
        self.tap(h, frames, lengths)
        return finish_outputs(self.tasks, [head(h) for head in self.heads], self.config.output)


@dataclass(frozen=True)
class NetVladConfig:
    """Seed 001 NetVLAD head."""

    clusters: int = 5
    window_frames: int = 0
    output: str = "linear"


@register_net
class NetVladHead(HeadNet):
    """NetVLAD pooling over true frames, Linear per task (seed 001).

    Arandjelovic et al. (2016), "NetVLAD: CNN architecture for weakly supervised place
    recognition", CVPR, Eq. 4: ``V(k, d) = sum_t a_k(x_t) (x_t(d) - c_k(d))`` with the soft
    assignment ``a_k(x_t) = softmax_k(w_k . x_t + b_k)``; padded frames get ``a = 0``. Then
    intra-normalisation (L2 per cluster) and a global L2 normalisation of the (K*D) vector.
    """

    name = "netvlad"
    config_type = NetVladConfig
    input_kind = "sequence"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: NetVladConfig | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        k = self.config.clusters
        if k < 1:
            raise ValueError(f"netvlad: clusters must be >= 1; got {k}")
        self.assign = nn.Linear(self.input_dim, k)
        self.centroids = nn.Parameter(torch.randn(k, self.input_dim) * self.input_dim**-0.5)
        self.heads = self._task_linears(k * self.input_dim)
        self.hidden_dim = k * self.input_dim

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = check_sequence(x, lengths, self.input_dim)
        x, lengths, mask = windowed(x, lengths, mask, self.config.window_frames)
        a = torch.softmax(self.assign(x), dim=-1) * mask.to(x.dtype)[..., None]  # (B, T, K)
        v = torch.einsum("btk,btd->bkd", a, x) - a.sum(dim=1)[..., None] * self.centroids
        v = F.normalize(v, dim=2)  # (B, K, D) intra-normalisation
        v = F.normalize(v.flatten(1), dim=1)  # (B, K*D)
        self.tap(v)
        return finish_outputs(self.tasks, [head(v) for head in self.heads], self.config.output)


AUTOPOOL_MODES = ("features", "outputs")


@dataclass(frozen=True)
class AutoPoolConfig:
    """Paper 001's Conformer+Autopool head.

    Attributes:
        pool: ``features`` (the paper: "An adaptive pooling layer ... which learns a set of
            weights before aggregating the features, followed by the task layers": one alpha
            per feature dimension, then one Linear per task) or ``outputs`` (FC(hidden)+ReLU
            per frame, per-frame task outputs, one alpha per output unit, as McFee et al. pool
            per-frame predictions).
        hidden: FC width of the ``outputs`` mode (unused by ``features``).
        alpha_init: initial alphas (0: the mean).
        window_frames: see :func:`windowed`.
        output: regression output mode.
    """

    pool: str = "features"
    hidden: int = 128
    alpha_init: float = 0.0
    window_frames: int = 0
    output: str = "linear"


def auto_pool(z: Tensor, alpha: Tensor, mask: Tensor) -> Tensor:
    """McFee, Salamon & Bello (2018), "Adaptive pooling operators for weakly labeled sound
    event detection", IEEE/ACM TASLP 26(11): ``y = sum_t z_t softmax_t(alpha z_t)`` per unit,
    over true frames only. z (B, T, K), alpha (K,), mask (B, T) -> (B, K)."""
    scores = (alpha * z).masked_fill(~mask[..., None], float("-inf"))
    return (torch.softmax(scores, dim=1) * z.masked_fill(~mask[..., None], 0.0)).sum(dim=1)


@register_net
class AutoPoolHead(HeadNet):
    """Auto-pool over true frames (alpha 0: mean, +inf: max, -inf: min), see
    :class:`AutoPoolConfig` for the two modes. In ``outputs`` mode, regression outputs go
    through ``output`` per frame before pooling (as McFee et al. pool probabilities);
    classification pools the logits."""

    name = "autopool"
    config_type = AutoPoolConfig
    input_kind = "sequence"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: AutoPoolConfig | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        c = self.config
        check_choice("autopool: pool", c.pool, AUTOPOOL_MODES)
        if c.pool == "features":
            self.alpha = nn.Parameter(torch.full((self.input_dim,), float(c.alpha_init)))
            self.heads = self._task_linears(self.input_dim)
            self.hidden_dim = self.input_dim
            return
        self.hidden_dim, self.hidden_frames = c.hidden, True
        self.frame = nn.Sequential(nn.Linear(self.input_dim, c.hidden), nn.ReLU())
        self.heads = self._task_linears(c.hidden)
        self.alphas = nn.ParameterList(
            nn.Parameter(torch.full((k,), float(c.alpha_init))) for _, _, k in self.tasks
        )

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = check_sequence(x, lengths, self.input_dim)
        x, lengths, mask = windowed(x, lengths, mask, self.config.window_frames)
        if self.config.pool == "features":
            h = auto_pool(x, self.alpha, mask)  # (B, D)
            self.tap(h)
            return finish_outputs(self.tasks, [head(h) for head in self.heads], self.config.output)
        h = self.frame(x)  # (B, T, hidden)
        self.tap(None, h, lengths)
        out: dict[str, Tensor] = {}
        for (name, kind, _), head, alpha in zip(self.tasks, self.heads, self.alphas):
            z = head(h)  # (B, T, k)
            if kind == REGRESSION:
                z = regression_output(z, self.config.output)
            out[name] = auto_pool(z, alpha, mask)  # (B, k)
        return out


@dataclass(frozen=True)
class Mean3Config:
    """Seed 001 mean + 3 dense layers head."""

    hidden: tuple[int, int, int] = (256, 128, 64)
    dropout: float = 0.0
    window_frames: int = 0
    output: str = "linear"


@register_net
class Mean3Head(HeadNet):
    """Mean over true frames, three Linear+ReLU layers, Linear per task (seed 001)."""

    name = "mean3"
    config_type = Mean3Config
    input_kind = "sequence"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: Mean3Config | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        dims = (self.input_dim, *self.config.hidden)
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), nn.ReLU(), nn.Dropout(self.config.dropout)]
        self.mlp = nn.Sequential(*layers)
        self.heads = self._task_linears(dims[-1])
        self.hidden_dim = dims[-1]

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = check_sequence(x, lengths, self.input_dim)
        x, lengths, mask = windowed(x, lengths, mask, self.config.window_frames)
        h = self.mlp(masked_mean(x, mask))  # (B, hidden[-1])
        self.tap(h)
        return finish_outputs(self.tasks, [head(h) for head in self.heads], self.config.output)

