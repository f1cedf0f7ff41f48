"""What defines a fine-tuning run, and the names it gives its folder and feature set."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.tasks import parse_tasks
from extract.base import FINETUNED_FILE, WHISPER_INPUTS
from extract.devices import DEVICES
from heads.config import (ADVERSARY_MODES, BETA_AT, DECAYS, OUTPUT_MODES, WEIGHTING_NAMES,
                          TrainOptions, parse_adversary, parse_weighting)

FINETUNED_DIR = "finetuned"
"""WORKDIR/finetuned/<run>/ holds one fine-tuning run."""
MODEL_SUBDIR = "model"
MAX_EVAL_CLIPS = 64
# settings that do not change the trained model: a rerun with other values reuses it
_RUNTIME_ONLY = ("workdir", "run_name", "device", "workers", "n_boot", "eval_batch_seconds",
                 "cache_gb")

OPTIMIZERS = ("adamw", "adam")
"""``adamw``: torch.optim.AdamW (decoupled weight decay, the default); ``adam``:
torch.optim.Adam, its weight decay an L2 term added to the gradient (paper 002's "Adam optimizer
with the weight decay coefficient")."""
HEAD_RNNS = ("lstm",)
"""Recurrent layers a sequence head (``head_rnn``) may put before its per-frame linear layer."""
HEAD_NETS = ("mlp-mtl",)
"""Registered nets (:mod:`heads.nets`) a fine-tune run may use as its one head over all outputs
(``head_net``): ``mlp-mtl``, seed 000's multitask MLP (:class:`heads.nets.mlp.MlpMtl`)."""
HEAD_NET_OPTIONS = ("projection", "chain", "chain_detach", "dropout")
"""``head_options`` keys: fields of :class:`heads.nets.mlp.MlpMtlConfig` (its ``hidden`` is
``head_hidden``, its ``output`` is ``output``)."""
FRAME_POOLINGS = ("first", "last", "max", "mean")
"""How a sequence head pools its per-frame outputs over each clip's true frames (paper 002's
four; names of :data:`extract.pooling.POOLINGS`)."""

PhaseFn = Callable[[str, int, float], None]
"""Called when a pass over clips starts: (description, clips, audio seconds)."""
ProgressFn = Callable[[int, float], None]
"""Called as clips finish: (clips, audio seconds)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one fine-tuning run (saved in its config.json).

    Attributes:
        workdir: the workdir (corpus reference; the store the embeddings go to).
        model: base checkpoint: hub id or save_pretrained folder (the ARG of ``ssl:ARG``).
        task: task spec, e.g. ``avb-high,avb-culture,avb-type,country``.
        run_name: folder under WORKDIR/finetuned (default: ``<base>-<tasks>-<time>``).
        layer: hidden state pooled for the heads; None: the model's last hidden state.
        frozen_epochs: stage 1 epochs (frozen backbone); 0 skips the stage.
        epochs: stage 2 epochs (everything trained); 0 skips the stage.
        lr: stage 2 learning rate (whole model).
        head_lr: stage 1 learning rate of the heads (AdamW default 1e-3).
        weight_decay: weight decay of backbone and heads (AdamW default 0.01): decoupled with
            ``optimizer`` adamw, an L2 term in the gradient with adam.
        batch_size: clips per step.
        patience: epochs without a better Val headline before a stage stops; 0 never.
        warmup: stage 2 epochs of linear warm-up before the decay (used when ``warmup_ratio``
            is None).
        warmup_ratio: stage 2 linear warm-up over this fraction of its optimiser steps (paper
            004: 0.1); None: ``warmup`` epochs.
        schedule: the decay after the warm-up: cosine (seed 000), linear or constant
            (:mod:`heads.finetune.schedule`).
        grad_accum: micro-batches of ``batch_size`` clips per optimiser step (the accumulated
            batch is ``batch_size * grad_accum`` clips).
        weighting: multitask weighting spec (:func:`heads.training.weighting.build_weighting`).
        loss: regression loss spec (:func:`heads.config.parse_loss_spec`).
        output: regression output mode (:data:`heads.nets.OUTPUT_MODES`).
        label_smoothing: cross-entropy label smoothing.
        class_weights: normalised inverse Train frequency class weights.
        head_hidden: width of each head's hidden layer; 0: one linear layer per output.
        head_rnn: ``lstm:LAYERSxHIDDEN`` (paper 002: ``lstm:2x512``): a sequence head on the
            layer's frames instead of heads on their masked mean: the LSTM over each clip's
            true frames, one linear layer per frame to all outputs, then ``frame_pooling`` over
            the true frames (:class:`heads.nets.sequence.LstmHead`); needs ``head_hidden`` 0,
            no ``shared_head`` and ``frozen_epochs`` 0. None: the pooled heads.
        frame_pooling: the sequence head's pooling (:data:`FRAME_POOLINGS`; ``last``: each
            clip's own last true frame); without ``head_rnn`` only ``mean`` (the pooled heads).
        optimizer: stage 2's optimiser (:data:`OPTIMIZERS`): ``adamw`` or ``adam``.
        shared_head: one shared hidden layer for all outputs instead of one per output.
        head_net: None (the heads above), or a net of :data:`HEAD_NETS` as the one head over all
            outputs: ``mlp-mtl`` is the frozen-stage ``mlp-mtl`` (:class:`heads.nets.mlp.MlpMtl`)
            with ``head_hidden`` as its width and ``output`` as its regression output; needs
            ``head_hidden`` >= 1, no ``shared_head`` and no ``head_rnn``.
        head_options: the net's options (keys of :data:`HEAD_NET_OPTIONS`), as a frozen
            recipe's ``[train.net]`` and ``chain``: ``projection`` (``per-task``: seed 000's
            ``Linear(H,256)-GELU-Linear(256,k)`` per task), ``chain`` (intermediate tasks by
            task, target or output name, a list or ``"a,b"``: their predictions are fed along
            with the pooled features to the other tasks), ``chain_detach``, ``dropout``. None:
            the net's defaults. Only with ``head_net``.
        max_seconds: training crops of longer clips (bounds memory); Val sees whole clips. A
            cropped clip leaves the CTC term of its step (its transcript no longer fits). 0:
            no crops, training sees whole clips too (seed 000).
        ctc: alpha, the weight of a character CTC head on the frame outputs (paper 004: 0.1);
            0: no CTC head. Vocabulary from the Train transcripts (label column ``text``).
        adversary: ``COLUMN:BETA`` (``speaker:1``): a classifier of that label column on the
            pooled output behind gradient reversal, its loss weighted beta; None: none.
        adversary_mode: ``reverse`` (gradient reversal) or ``forward`` (paper 004's ablation).
        adversary_at: where beta scales: ``loss`` (paper 004's joint loss) or ``grl`` (Ganin's
            lambda: the classifier learns at full rate, the encoder gets beta times the
            gradient; at beta 0 the classifier is a probe that leaves the encoder alone).
        eval_batch_seconds: padded audio per evaluation batch.
        freeze_feature_encoder: keep the feature encoder frozen in stage 2: the CNN feature
            encoder of wav2vec2-style models, Whisper's conv stem (``conv1``, ``conv2``),
            w2v-BERT's feature projection.
        gradient_checkpointing: recompute transformer activations in backward (less memory).
        whisper_input: Whisper checkpoints: ``padded`` (the model's own 30 s windows) or
            ``trimmed`` (input cut to each clip), as ``extract --whisper-input`` (the stored
            set is extracted the same way).
        device: ``auto`` | ``cpu`` | ``cuda``.
        seed: seeds the heads, batch order, crops and SpecAugment.
        workers: audio decoding threads.
        cache_gb: decoded audio up to this size stays in memory between epochs.
        n_boot: bootstrap resamples of the Val CI.
    """

    workdir: str
    model: str
    task: str
    run_name: str | None = None
    layer: int | None = None
    frozen_epochs: int = 10
    epochs: int = 10
    lr: float = 4e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    patience: int = 2
    warmup: float = 1.0
    warmup_ratio: float | None = None
    schedule: str = "cosine"
    grad_accum: int = 1
    weighting: str = "uw"
    loss: str = "ccc"
    output: str = "clamp"
    label_smoothing: float = 0.1
    class_weights: bool = True
    head_hidden: int = 256
    shared_head: bool = False
    head_net: str | None = None
    head_options: dict[str, Any] | None = None
    head_rnn: str | None = None
    frame_pooling: str = "mean"
    optimizer: str = "adamw"
    max_seconds: float = 8.0
    ctc: float = 0.0
    adversary: str | None = None
    adversary_mode: str = "reverse"
    adversary_at: str = "loss"
    eval_batch_seconds: float = 64.0
    freeze_feature_encoder: bool = True
    gradient_checkpointing: bool = False
    whisper_input: str = "padded"
    device: str = "auto"
    seed: int = 0
    workers: int = 2
    cache_gb: float = 4.0
    n_boot: int = 200

    def check(self) -> None:
        """Raise ValueError naming the first invalid value, what is valid and what to do."""
        ints = {"frozen_epochs": 0, "epochs": 0, "batch_size": 1, "patience": 0, "head_hidden": 0,
                "workers": 1, "n_boot": 0, "grad_accum": 1}
        for key, low in ints.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"option {key} must be an integer >= {low}; got {value!r}")
        if self.frozen_epochs + self.epochs < 1:
            raise ValueError("frozen_epochs and epochs are both 0: nothing to train; give "
                             "--epochs N (stage 2) and/or --frozen-epochs N (stage 1)")
        for key in ("lr", "head_lr", "eval_batch_seconds"):
            if not getattr(self, key) > 0:
                raise ValueError(f"option {key} must be > 0; got {getattr(self, key)!r}")
        for key in ("weight_decay", "warmup", "cache_gb", "ctc", "max_seconds"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"option {key} must be >= 0; got {getattr(self, key)!r}")
        if self.warmup_ratio is not None and not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"option warmup_ratio must be in [0, 1) (paper 004: 0.1); got "
                             f"{self.warmup_ratio!r}")
        if self.schedule not in DECAYS:
            raise ValueError(f"option schedule must be one of {DECAYS}; got {self.schedule!r}")
        if self.ctc == float("inf"):
            raise ValueError("option ctc (alpha) must be finite; got inf")
        if self.adversary is not None:
            parse_adversary(self.adversary)
        if self.adversary_mode not in ADVERSARY_MODES:
            raise ValueError(f"option adversary_mode must be one of {ADVERSARY_MODES}; got "
                             f"{self.adversary_mode!r}")
        if self.adversary_at not in BETA_AT:
            raise ValueError(f"option adversary_at must be one of {BETA_AT}; got {self.adversary_at!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"option label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.output not in OUTPUT_MODES:
            raise ValueError(f"option output must be one of {OUTPUT_MODES}; got {self.output!r}")
        if self.whisper_input not in WHISPER_INPUTS:
            raise ValueError(f"option whisper_input must be one of {WHISPER_INPUTS}; got "
                             f"{self.whisper_input!r}")
        if self.device not in DEVICES:
            raise ValueError(f"option device must be one of {DEVICES}; got {self.device!r}")
        if self.layer is not None and (isinstance(self.layer, bool) or not isinstance(self.layer, int)):
            raise ValueError(f"option layer must be an integer hidden-state index; got {self.layer!r}")
        if self.run_name is not None and not all(
                re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", part)
                for part in self.run_name.split("/", 1)):
            raise ValueError(f"run name {self.run_name!r} must be a plain folder name (letters, "
                             f"digits, . _ + -)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"option optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        if self.frame_pooling not in FRAME_POOLINGS:
            raise ValueError(f"option frame_pooling must be one of {FRAME_POOLINGS}; got "
                             f"{self.frame_pooling!r}")
        if self.head_rnn is None:
            if self.frame_pooling != "mean":
                raise ValueError(f"option frame_pooling {self.frame_pooling!r} needs a sequence "
                                 f"head: give --head-rnn lstm:2x512 too (the pooled heads read "
                                 f"the mean)")
        else:
            parse_head_rnn(self.head_rnn)
            needs = {"head_hidden": (self.head_hidden, 0, "--head-hidden 0"),
                     "shared_head": (self.shared_head, False, "no --shared-head"),
                     "frozen_epochs": (self.frozen_epochs, 0, "--frozen-epochs 0")}
            for key, (value, want, flag) in needs.items():
                if value != want:
                    raise ValueError(
                        f"option head_rnn {self.head_rnn!r} feeds the frames to one linear layer "
                        f"per frame and trains with the backbone (stage 1 caches pooled "
                        f"embeddings, not frames): option {key} must be {want!r}; got "
                        f"{value!r} (give {flag})")
        self._check_head_net()
        TrainOptions.from_dict({"loss": self.loss})  # names the bad loss
        name, _ = parse_weighting(self.weighting)
        if name not in WEIGHTING_NAMES:
            raise ValueError(f"unknown weighting {self.weighting!r}; valid: {', '.join(sorted(WEIGHTING_NAMES))}")

    def _check_head_net(self) -> None:
        if self.head_net is None:
            if self.head_options:
                raise ValueError(f"option head_options {self.head_options!r} configures a head "
                                 f"net: give head_net too (one of {HEAD_NETS})")
            return
        if self.head_net not in HEAD_NETS:
            raise ValueError(f"option head_net must be one of {HEAD_NETS} (or left out); got "
                             f"{self.head_net!r}")
        # head_rnn needs head_hidden 0 (checked above): it never reaches here with head_hidden >= 1
        needs = {"head_hidden": self.head_hidden >= 1, "shared_head": not self.shared_head}
        bad = [k for k, ok in needs.items() if not ok]
        if bad:
            raise ValueError(f"option head_net {self.head_net!r} is one net on the pooled "
                             f"embedding with a hidden layer of head_hidden units: it needs "
                             f"head_hidden >= 1, no shared_head and no head_rnn; {bad[0]} is "
                             f"{getattr(self, bad[0])!r}")
        options = self.head_options or {}
        if not isinstance(options, dict):
            raise ValueError(f"option head_options must be a table of {HEAD_NET_OPTIONS}; got "
                             f"{options!r}")
        unknown = sorted(set(options) - set(HEAD_NET_OPTIONS))
        if unknown:
            raise ValueError(f"option head_options: unknown key(s) {unknown}; valid: "
                             f"{', '.join(HEAD_NET_OPTIONS)} (width and output are head_hidden "
                             f"and output)")

    def settings(self) -> dict[str, Any]:
        """The fields that determine the trained model (a rerun with equal ones reuses it)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in _RUNTIME_ONLY}

    @property
    def accumulated_batch(self) -> int:
        """Clips per optimiser step: ``batch_size * grad_accum``."""
        return self.batch_size * self.grad_accum


def parse_head_rnn(spec: str) -> tuple[str, int, int]:
    """``lstm:2x512`` -> ``("lstm", 2, 512)``: the recurrent kind, its layers and hidden size.

    Raises:
        ValueError: not ``KIND:LAYERSxHIDDEN`` with a kind of :data:`HEAD_RNNS` and both
            numbers >= 1.
    """
    m = re.fullmatch(r"([a-z]+):([0-9]+)x([0-9]+)", str(spec).strip())
    if m is None or m.group(1) not in HEAD_RNNS or int(m.group(2)) < 1 or int(m.group(3)) < 1:
        raise ValueError(f"option head_rnn must be KIND:LAYERSxHIDDEN with KIND one of "
                         f"{HEAD_RNNS} and both numbers >= 1, e.g. lstm:2x512 (paper 002); got "
                         f"{spec!r}")
    return m.group(1), int(m.group(2)), int(m.group(3))


def chain_entries(chain: Any) -> tuple[str, ...]:
    """``head_options``' ``chain`` (``"a,b"`` or a list) as a tuple of names."""
    if chain is None:
        return ()
    items = chain.split(",") if isinstance(chain, str) else list(chain)
    return tuple(str(c).strip() for c in items if str(c).strip())


def option_defaults() -> dict[str, Any]:
    """Every option's default (a run recorded before an option existed ran with its default)."""
    return {f.name: f.default for f in dataclasses.fields(FinetuneConfig)
            if f.default is not dataclasses.MISSING}


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns."""

    run_dir: Path
    model_dir: Path
    metrics: dict[str, Any]
    resumed: bool = False

    @property
    def spec(self) -> str:
        """The feature spec of the fine-tuned backbone: ``ssl:<run_dir>/model``."""
        return f"ssl:{self.model_dir}"


def model_basename(model: str) -> str:
    """A short name of a checkpoint (hub id or folder), e.g. ``data2vec-audio-base``."""
    base = Path(model.rstrip("/\\")).name
    if re.fullmatch(r"[0-9a-f]{40}", base) and Path(model).parent.name == "snapshots":
        base = Path(model).parent.parent.name.split("--")[-1]
    if base == MODEL_SUBDIR and (Path(model) / FINETUNED_FILE).is_file():  # a fine-tuned folder
        base = Path(model).resolve().parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.").lower() or "model"


def default_run_name(cfg: FinetuneConfig) -> str:
    tasks = "+".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", t.name) for t in parse_tasks(cfg.task))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{model_basename(cfg.model)}-ft-{tasks}-{stamp}"


def readable_name(model: str, run_name: str) -> str:
    """The set's name part recorded in finetuned.json: ``<base>-ft-<run>`` (the run name alone
    when it already starts with the base name; a fold's ``study/fold`` joined by ``-``)."""
    base = model_basename(model)
    run_name = run_name.replace("/", "-")
    return run_name if run_name.lower().startswith(base) else f"{base}-ft-{run_name}"


def write_json(path: Path, obj: Any) -> None:
    """Write JSON under a temporary name, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True, default=str))
    os.replace(tmp, path)
