"""Vector heads: the organisers' feature MLP (``mlp-avb``) and seed 000's multitask MLP
with task chaining (``mlp-mtl``).

Example:
    >>> import torch
    >>> from heads.nets import build_net
    >>> tasks = [("high", "regression", 10), ("type", "classification", 8)]
    >>> net = build_net("mlp-mtl", 88, tasks, output="clamp")
    >>> {k: tuple(v.shape) for k, v in net(torch.randn(4, 88)).items()}
    {'high': (4, 10), 'type': (4, 8)}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from heads.nets.base import CLASSIFICATION, HeadNet, check_choice, finish_outputs, register_net

@dataclass(frozen=True)
class MlpAvbConfig:
    """A-VB / ExVo organisers' feature MLP (FIELD_NOTES section 4)."""

    hidden: tuple[int, int] = (128, 64)
    head_hidden: int = 32
    negative_slope: float = 0.01
    dropout: float = 0.0
    output: str = "sigmoid"
    linear_outputs: tuple[str, ...] = ()
    """Regression tasks with a linear output whatever ``output`` says (the ExVo organisers'
    linear age in years beside sigmoid emotions, with ``TrainOptions.unscaled = ("age",)``)."""


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
        regression = [n for n, kind, _ in self.tasks if kind != CLASSIFICATION]
        linear = c.linear_outputs  # a tuple, or "age,..." as --net gives it
        self.linear_outputs = tuple(n.strip() for n in linear.split(",") if n.strip()) \
            if isinstance(linear, str) else tuple(linear)
        stray = [n for n in self.linear_outputs if n not in regression]
        if stray:
            raise ValueError(f"mlp-avb: linear_outputs {list(self.linear_outputs)} must name "
                             f"regression tasks of {regression}; {stray} is not one")
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
        self.hidden_dim = h2

    def forward(self, x: Tensor) -> dict[str, Tensor]:  # x (B, F)
        """x (batch, dim) -> {task: (batch, out_dim)}; raises ValueError on a bad shape."""
        self._check_vector(x)
        h = self.trunk(x)  # (B, 64)
        self.tap(h)
        return finish_outputs(self.tasks, [head(h) for head in self.heads], self.config.output,
                              self.linear_outputs)


PROJECTIONS = ("per-task", "shared")
"""``mlp-mtl`` wiring: ``per-task`` (seed 000: each task its own Linear(D,256)-GELU-Linear(256,k),
intermediate predictions fed along with the pooled features) or ``shared`` (one shared
Linear(D,256)-GELU, then one Linear per task; intermediate predictions concatenated to the
shared hidden layer; its hidden layer is the representation seed 004's auxiliary heads read)."""


@dataclass(frozen=True)
class MlpMtlConfig:
    """Seed 000 multitask MLP.

    Attributes:
        hidden: width of the Linear + GELU projection (per task, or the shared one).
        output: regression output mode (:data:`OUTPUT_MODES`); seed 000's best is ``clamp``.
        chain: intermediate tasks, predicted first; their predictions (softmax probabilities
            for classification, regression outputs after ``output``) are fed to every other
            task: concatenated to the input features (``per-task``) or to the shared hidden
            layer (``shared``).
        chain_detach: stop gradients from the downstream tasks into the chained predictions.
        dropout: dropout after each GELU.
        projection: :data:`PROJECTIONS`; ``shared`` is the default (what the finetune heads
            and seed 004's auxiliary heads build on); the seed-000 recipes set ``per-task``,
            the paper's wiring.
    """

    hidden: int = 256
    output: str = "sigmoid"
    chain: tuple[str, ...] = ()
    chain_detach: bool = False
    dropout: float = 0.0
    projection: str = "shared"


@register_net
class MlpMtl(HeadNet):
    """Seed 000's multitask MLP with optional task chaining.

    ``projection = "per-task"`` (the paper, sec. II): per task ``Linear(D', hidden)-GELU-
    Linear(hidden, k)`` where ``D'`` is the pooled feature width, plus the intermediate
    tasks' output sizes for the non-intermediate tasks (their predictions are fed "along with
    the extracted features"). ``projection = "shared"``: one shared ``Linear(D, hidden)-GELU``,
    then one ``Linear`` per task; intermediate predictions join the shared hidden layer.
    ``heads[i]`` is task i's module (a Sequential per task, a Linear when shared).
    """

    name = "mlp-mtl"
    config_type = MlpMtlConfig
    input_kind = "vector"

    def __init__(self, input_dim: int, tasks: Sequence[Sequence[Any]],
                 config: MlpMtlConfig | None = None) -> None:
        super().__init__(input_dim, tasks, config)
        c = self.config
        check_choice("mlp-mtl: projection", c.projection, PROJECTIONS)
        names = [t[0] for t in self.tasks]
        unknown = [n for n in c.chain if n not in names]
        if unknown or len(set(c.chain)) != len(c.chain):
            raise ValueError(f"mlp-mtl: chain {c.chain} must name distinct tasks of {names}")
        chain_dim = sum(k for n, _, k in self.tasks if n in c.chain)
        if c.projection == "shared":
            self.shared = nn.Sequential(nn.Linear(self.input_dim, c.hidden), nn.GELU(),
                                        nn.Dropout(c.dropout))
            self.heads = nn.ModuleList(
                nn.Linear(c.hidden if n in c.chain else c.hidden + chain_dim, k)
                for n, _, k in self.tasks
            )
            self.hidden_dim = c.hidden
        else:  # per task; no representation shared by the tasks besides the input itself
            self.shared = None
            self.heads = nn.ModuleList(
                nn.Sequential(
                    nn.Linear(self.input_dim if n in c.chain else self.input_dim + chain_dim,
                              c.hidden),
                    nn.GELU(), *([nn.Dropout(c.dropout)] if c.dropout > 0 else []),
                    nn.Linear(c.hidden, k))
                for n, _, k in self.tasks
            )
            self.hidden_dim = 0

    def forward(self, x: Tensor) -> dict[str, Tensor]:  # x (B, D)
        """x (batch, dim) -> {task: (batch, out_dim)}; raises ValueError on a bad shape."""
        self._check_vector(x)
        c = self.config
        if self.shared is not None:
            h = self.shared(x)  # (B, hidden)
            self.tap(h)
        else:
            h = x  # (B, D): the pooled features feed every task's projection
        index = {n: i for i, (n, _, _) in enumerate(self.tasks)}
        out: dict[str, Tensor] = {}
        fed: list[Tensor] = []
        for n in c.chain:
            _, kind, _ = self.tasks[index[n]]
            out[n] = finish_outputs([self.tasks[index[n]]], [self.heads[index[n]](h)], c.output)[n]
            pred = torch.softmax(out[n], dim=-1) if kind == CLASSIFICATION else out[n]
            fed.append(pred.detach() if c.chain_detach else pred)
        h_down = torch.cat([h, *fed], dim=-1)  # (B, hidden or D, + chain_dim)
        for i, task in enumerate(self.tasks):
            if task[0] not in out:
                out[task[0]] = finish_outputs([task], [self.heads[i](h_down)], c.output)[task[0]]
        return {n: out[n] for n, _, _ in self.tasks}
