"""Lightweight multitask torch heads for cached features, and the :data:`NETS` registry.

Every net is built from ``input_dim``, the task list and one small frozen config dataclass,
and returns ``dict[task name, Tensor (batch, out_dim)]``. A task is ``(name, kind, out_dim)``
with ``kind`` ``"regression"`` (outputs go through the config's ``output`` mode) or
``"classification"`` (raw logits; apply softmax / cross-entropy outside).

Two input kinds (class attribute ``input_kind``):

* ``"vector"``: ``net(x)``, x (batch, dim), e.g. openSMILE functionals or pooled SSL layers;
* ``"sequence"``: ``net(x, lengths)``, x (batch, frames, dim) zero- or garbage-padded after
  ``lengths`` (batch,) true frames. Frames past a clip's length never influence its output.

The spectrogram CNNs (``resnet18``, ``resnet34``, ``cnn-exits``) are sequence nets defined in
:mod:`heads.cnn` and registered here by importing it.

Example:
    >>> import torch
    >>> tasks = [("high", "regression", 10), ("type", "classification", 8)]
    >>> net = build_net("mlp-mtl", 88, tasks, output="clamp")
    >>> {k: tuple(v.shape) for k, v in net(torch.randn(4, 88)).items()}
    {'high': (4, 10), 'type': (4, 8)}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

REGRESSION = "regression"
CLASSIFICATION = "classification"
TASK_KINDS = (REGRESSION, CLASSIFICATION)
OUTPUT_MODES = ("sigmoid", "clamp", "clamp-st", "linear")
"""Regression output modes: sigmoid; clamp to [0, 1] (plain ``torch.clamp``: zero gradient
outside, as in seed 000); clamp-st (clamp forward, identity gradient: straight-through);
linear (no transform)."""
POOLINGS = ("first", "last", "max", "mean")

TaskSpec = tuple[str, str, int]

NETS: dict[str, type["HeadNet"]] = {}
"""Net name -> class; the CLI choices and the contract tests are generated from it."""


def register_net(cls: type["HeadNet"]) -> type["HeadNet"]:
    """Class decorator: put a net into :data:`NETS` under its ``name``.

    Raises:
        ValueError: the name is registered already.
    """
    if cls.name in NETS:
        raise ValueError(f"net name {cls.name!r} is registered twice")
    NETS[cls.name] = cls
    return cls


# -- helpers ---------------------------------------------------------------------------------
def _check_tasks(tasks: Sequence[Sequence[Any]]) -> tuple[TaskSpec, ...]:
    out: list[TaskSpec] = []
    for task in tasks:
        if len(task) != 3:
            raise ValueError(f"a task is (name, kind, out_dim); got {task!r}")
        name, kind, dim = str(task[0]), str(task[1]), int(task[2])
        if kind not in TASK_KINDS:
            raise ValueError(f"task {name!r}: kind must be one of {TASK_KINDS}; got {kind!r}")
        if dim < 1 or (kind == CLASSIFICATION and dim < 2):
            raise ValueError(f"task {name!r}: out_dim {dim} is too small for {kind}")
        out.append((name, kind, dim))
    names = [t[0] for t in out]
    if not out or len(set(names)) != len(names):
        raise ValueError(f"tasks must be a non-empty list with unique names; got {names}")
    return tuple(out)


def _check_choice(field: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"{field} must be one of {tuple(valid)}; got {value!r}")


def regression_output(y: Tensor, mode: str) -> Tensor:
    """Apply a regression output mode (see :data:`OUTPUT_MODES`) elementwise."""
    if mode == "sigmoid":
        return torch.sigmoid(y)
    if mode == "clamp":
        return y.clamp(0.0, 1.0)
    if mode == "clamp-st":
        return y + (y.clamp(0.0, 1.0) - y).detach()
    if mode == "linear":
        return y
    raise ValueError(f"output must be one of {OUTPUT_MODES}; got {mode!r}")


def _finish(tasks: Sequence[TaskSpec], raw: Sequence[Tensor], mode: str) -> dict[str, Tensor]:
    """Per-task raw outputs -> dict, regression through ``mode``, logits untouched."""
    return {
        name: regression_output(y, mode) if kind == REGRESSION else y
        for (name, kind, _), y in zip(tasks, raw)
    }


def length_mask(lengths: Tensor, frames: int) -> Tensor:
    """``mask[b, t] = t < lengths[b]``, (batch, frames) bool, on ``lengths``' device."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def _check_sequence(x: Tensor, lengths: Tensor, input_dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Validate ``(x, lengths)``; return x with padding zeroed, lengths (long), mask (B, T)."""
    if x.dim() != 3 or x.shape[2] != input_dim:
        raise ValueError(f"x must be (batch, frames, {input_dim}); got {tuple(x.shape)}")
    lengths = torch.as_tensor(lengths, device=x.device).long()
    if lengths.shape != (x.shape[0],):
        raise ValueError(f"lengths must be ({x.shape[0]},); got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > x.shape[1]).any()):
        raise ValueError(f"lengths must be in [1, frames={x.shape[1]}]; got {lengths.tolist()}")
    mask = length_mask(lengths, x.shape[1])  # (B, T)
    # Zero the padding so that garbage (even NaN/inf) past a clip's end cannot leak in.
    return x.masked_fill(~mask[..., None], 0.0), lengths, mask


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the true frames: x (B, T, D), mask (B, T) -> (B, D)."""
    m = mask.to(x.dtype)[..., None]  # (B, T, 1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def pool_frames(y: Tensor, lengths: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """Pool per-frame values over true frames only: y (B, T, S) -> (B, S).

    Args:
        y: per-frame values.
        lengths: true frames per row, (B,) long, in [1, T].
        mask: ``length_mask(lengths, T)``.
        pooling: ``first`` | ``last`` | ``max`` | ``mean``.
    """
    if pooling == "first":
        return y[:, 0]
    if pooling == "last":
        idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, y.shape[2])  # (B, 1, S)
        return y.gather(1, idx).squeeze(1)
    if pooling == "max":
        return y.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
    if pooling == "mean":
        return masked_mean(y, mask)
    raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")


def _run_lstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Run on true frames only: x (B, T, D) -> (frame outputs (B, T, H), last hidden (B, H))."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, (h_n, _) = lstm(packed)
    frames, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return frames, h_n[-1]  # h_n is restored to the input order for unsorted packs


class HeadNet(nn.Module):
    """Base class of the registered nets.

    Args:
        input_dim: feature dimension D.
        tasks: ``(name, kind, out_dim)`` per task; kind ``regression`` or ``classification``.
        config: an instance of ``config_type``; ``None``: its defaults.

    Raises:
        ValueError: invalid ``input_dim``, task list or config value (named in the message).
        TypeError: ``config`` is not a ``config_type``.

    Attributes:
        name: registry key.
        config_type: the frozen dataclass of hyperparameters.
        input_kind: ``"vector"`` (``forward(x)``) or ``"sequence"`` (``forward(x, lengths)``).
        input_dim: feature dimension D.
        tasks: the validated ``(name, kind, out_dim)`` tuples, in output order.
        config: the config used (save ``dataclasses.asdict(net.config)`` with a checkpoint).
    """

    name: ClassVar[str]
    config_type: ClassVar[type]
    input_kind: ClassVar[str]

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]], config: Any = None) -> None:
        super().__init__()
        if int(input_dim) < 1:
            raise ValueError(f"input_dim must be >= 1; got {input_dim}")
        self.input_dim = int(input_dim)
        self.tasks = _check_tasks(tasks)
        self.config = self.config_type() if config is None else config
        if not isinstance(self.config, self.config_type):
            raise TypeError(f"{self.name} needs a {self.config_type.__name__}; got {config!r}")
        if hasattr(self.config, "output"):
            _check_choice(f"{self.name}: output", self.config.output, OUTPUT_MODES)

    def _task_linears(self, in_dim: int) -> nn.ModuleList:
        return nn.ModuleList(nn.Linear(in_dim, k) for _, _, k in self.tasks)

    def _check_vector(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"x must be (batch, {self.input_dim}); got {tuple(x.shape)}")


# -- vector heads ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MlpAvbConfig:
    """A-VB / ExVo organisers' feature MLP (FIELD_NOTES section 4)."""

    hidden: tuple[int, int] = (128, 64)
    head_hidden: int = 32
    negative_slope: float = 0.01
    dropout: float = 0.0
    output: str = "sigmoid"


@register_net
class MlpAvb(HeadNet):
    """Linear(F,128)-LN-LeakyReLU-Linear(128,64)-LN-LeakyReLU; per task Linear(64,32)-LeakyReLU-
    Linear(32,k); sigmoid on regression outputs (organisers' baseline, FIELD_NOTES section 4)."""

    name = "mlp-avb"
    config_type = MlpAvbConfig
    input_kind = "vector"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: MlpAvbConfig | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        c = self.config
        h1, h2 = c.hidden
        self.trunk = nn.Sequential(
            nn.Linear(self.input_dim, h1), nn.LayerNorm(h1), nn.LeakyReLU(c.negative_slope),
            nn.Dropout(c.dropout),
            nn.Linear(h1, h2), nn.LayerNorm(h2), nn.LeakyReLU(c.negative_slope),
            nn.Dropout(c.dropout),
        )
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(h2, c.head_hidden), nn.LeakyReLU(c.negative_slope),
                          nn.Linear(c.head_hidden, k))
            for _, _, k in self.tasks
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:  # x (B, F)
        """x (batch, dim) -> {task: (batch, out_dim)}; raises ValueError on a bad shape."""
        self._check_vector(x)
        h = self.trunk(x)  # (B, 64)
        return _finish(self.tasks, [head(h) for head in self.heads], self.config.output)


@dataclass(frozen=True)
class MlpMtlConfig:
    """Seed 000 multitask MLP.

    Attributes:
        hidden: width of the shared Linear + GELU projection.
        output: regression output mode (:data:`OUTPUT_MODES`); seed 000's best is ``clamp``.
        chain: intermediate tasks, predicted first from the shared features; their
            predictions (softmax probabilities for classification, regression outputs after
            ``output``) are concatenated to the shared features for every other task.
        chain_detach: stop gradients from the downstream tasks into the chained predictions.
        dropout: dropout after the shared projection.
    """

    hidden: int = 256
    output: str = "sigmoid"
    chain: tuple[str, ...] = ()
    chain_detach: bool = False
    dropout: float = 0.0


@register_net
class MlpMtl(HeadNet):
    """Shared Linear(D,256)+GELU, then one Linear per task, with optional task chaining (seed 000)."""

    name = "mlp-mtl"
    config_type = MlpMtlConfig
    input_kind = "vector"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: MlpMtlConfig | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        c = self.config
        names = [t[0] for t in self.tasks]
        unknown = [n for n in c.chain if n not in names]
        if unknown or len(set(c.chain)) != len(c.chain):
            raise ValueError(f"mlp-mtl: chain {c.chain} must name distinct tasks of {names}")
        self.shared = nn.Sequential(nn.Linear(self.input_dim, c.hidden), nn.GELU(),
                                    nn.Dropout(c.dropout))
        chain_dim = sum(k for n, _, k in self.tasks if n in c.chain)
        self.heads = nn.ModuleList(
            nn.Linear(c.hidden if n in c.chain else c.hidden + chain_dim, k)
            for n, _, k in self.tasks
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:  # x (B, D)
        """x (batch, dim) -> {task: (batch, out_dim)}; raises ValueError on a bad shape."""
        self._check_vector(x)
        c = self.config
        h = self.shared(x)  # (B, hidden)
        index = {n: i for i, (n, _, _) in enumerate(self.tasks)}
        out: dict[str, Tensor] = {}
        fed: list[Tensor] = []
        for n in c.chain:
            _, kind, _ = self.tasks[index[n]]
            out[n] = _finish([self.tasks[index[n]]], [self.heads[index[n]](h)], c.output)[n]
            pred = torch.softmax(out[n], dim=-1) if kind == CLASSIFICATION else out[n]
            fed.append(pred.detach() if c.chain_detach else pred)
        h_down = torch.cat([h, *fed], dim=-1)  # (B, hidden + chain_dim)
        for i, task in enumerate(self.tasks):
            if task[0] not in out:
                out[task[0]] = _finish([task], [self.heads[i](h_down)], c.output)[task[0]]
        return {n: out[n] for n, _, _ in self.tasks}


# -- sequence heads --------------------------------------------------------------------------
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
        _check_choice("lstm: pooling", c.pooling, POOLINGS)
        self.lstm = nn.LSTM(self.input_dim, c.hidden, num_layers=c.layers, batch_first=True,
                            dropout=c.dropout if c.layers > 1 else 0.0)
        self.frame_out = nn.Linear(c.hidden, sum(k for _, _, k in self.tasks))

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = _check_sequence(x, lengths, self.input_dim)
        frames, _ = _run_lstm(self.lstm, x, lengths)  # (B, T, hidden)
        pooled = pool_frames(self.frame_out(frames), lengths, mask, self.config.pooling)  # (B, S)
        raw = pooled.split([k for _, _, k in self.tasks], dim=-1)
        return _finish(self.tasks, raw, self.config.output)


@dataclass(frozen=True)
class Fc128Config:
    """Seed 001 FC head: per-frame FC + ReLU, masked mean."""

    hidden: int = 128
    output: str = "linear"


@register_net
class Fc128Head(HeadNet):
    """Per-frame Linear(D,128)+ReLU, mean over true frames, Linear per task (seed 001)."""

    name = "fc128"
    config_type = Fc128Config
    input_kind = "sequence"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: Fc128Config | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        self.frame = nn.Sequential(nn.Linear(self.input_dim, self.config.hidden), nn.ReLU())
        self.heads = self._task_linears(self.config.hidden)

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = _check_sequence(x, lengths, self.input_dim)
        h = masked_mean(self.frame(x), mask)  # (B, hidden)
        return _finish(self.tasks, [head(h) for head in self.heads], self.config.output)


@dataclass(frozen=True)
class Lstm128Config:
    """Seed 001 LSTM head: one LSTM layer, last true frame."""

    hidden: int = 128
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

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, _ = _check_sequence(x, lengths, self.input_dim)
        _, h = _run_lstm(self.lstm, x, lengths)  # (B, hidden)
        return _finish(self.tasks, [head(h) for head in self.heads], self.config.output)


@dataclass(frozen=True)
class NetVladConfig:
    """Seed 001 NetVLAD head."""

    clusters: int = 5
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

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = _check_sequence(x, lengths, self.input_dim)
        a = torch.softmax(self.assign(x), dim=-1) * mask.to(x.dtype)[..., None]  # (B, T, K)
        v = torch.einsum("btk,btd->bkd", a, x) - a.sum(dim=1)[..., None] * self.centroids
        v = F.normalize(v, dim=2)  # (B, K, D) intra-normalisation
        v = F.normalize(v.flatten(1), dim=1)  # (B, K*D)
        return _finish(self.tasks, [head(v) for head in self.heads], self.config.output)


@dataclass(frozen=True)
class AutoPoolConfig:
    """Seed 001 AutoPool head."""

    hidden: int = 128
    alpha_init: float = 0.0
    output: str = "linear"


@register_net
class AutoPoolHead(HeadNet):
    """Per-frame FC(128)+ReLU, per-frame task outputs, auto-pooled over true frames (seed 001).

    McFee, Salamon & Bello (2018), "Adaptive pooling operators for weakly labeled sound event
    detection", IEEE/ACM TASLP 26(11), auto-pool: ``y = sum_t z_t softmax_t(alpha z_t)`` per
    output unit, with a learned ``alpha`` per unit (0: mean, +inf: max, -inf: min); the
    softmax runs over true frames only. Regression outputs go through ``output`` per frame
    before pooling (as the paper pools probabilities); classification pools the logits.
    """

    name = "autopool"
    config_type = AutoPoolConfig
    input_kind = "sequence"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: AutoPoolConfig | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        c = self.config
        self.frame = nn.Sequential(nn.Linear(self.input_dim, c.hidden), nn.ReLU())
        self.heads = self._task_linears(c.hidden)
        self.alphas = nn.ParameterList(
            nn.Parameter(torch.full((k,), float(c.alpha_init))) for _, _, k in self.tasks
        )

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = _check_sequence(x, lengths, self.input_dim)
        h = self.frame(x)  # (B, T, hidden)
        out: dict[str, Tensor] = {}
        for (name, kind, _), head, alpha in zip(self.tasks, self.heads, self.alphas):
            z = head(h)  # (B, T, k)
            if kind == REGRESSION:
                z = regression_output(z, self.config.output)
            scores = (alpha * z).masked_fill(~mask[..., None], float("-inf"))  # (B, T, k)
            out[name] = (torch.softmax(scores, dim=1) * z).sum(dim=1)  # (B, k)
        return out


@dataclass(frozen=True)
class Mean3Config:
    """Seed 001 mean + 3 dense layers head."""

    hidden: tuple[int, int, int] = (256, 128, 64)
    dropout: float = 0.0
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

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:  # x (B, T, D)
        """x (batch, frames, dim), lengths (batch,) in [1, frames] -> {task: (batch, out_dim)}."""
        x, lengths, mask = _check_sequence(x, lengths, self.input_dim)
        h = self.mlp(masked_mean(x, mask))  # (B, hidden[-1])
        return _finish(self.tasks, [head(h) for head in self.heads], self.config.output)


def build_net(name: str, input_dim: int, tasks: Sequence[Sequence[Any]], **options: Any) -> HeadNet:
    """Make a registered net; ``options`` are fields of its config dataclass.

    Lists (as TOML gives them) become tuples.

    Args:
        name: a key of :data:`NETS`.
        input_dim: feature dimension D.
        tasks: ``(name, kind, out_dim)`` per task.
        **options: config fields, e.g. ``output="clamp"``, ``chain=("country", "type")``.

    Returns:
        The net (``net.input_kind`` says how to call it).

    Raises:
        ValueError: unknown net or option (the message lists the valid ones), or an invalid
            task list or option value.
    """
    if name not in NETS:
        raise ValueError(f"unknown net {name!r}; valid: {', '.join(sorted(NETS))}")
    cls = NETS[name]
    valid = [f.name for f in dataclasses.fields(cls.config_type)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"net {name!r}: unknown option(s) {unknown}; valid: {', '.join(valid)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return cls(input_dim, tasks, cls.config_type(**values))


# The spectrogram CNNs live in their own module; importing it registers resnet18, resnet34
# and cnn-exits, so that NETS is complete wherever heads.nets is imported.
from heads import cnn as _cnn  # noqa: E402,F401  (import at the end: cnn imports this module)
